"""What a callback says happened, and the summary the notifier sends when it is given no ``content``.

Read when a callback fires, never when a DAG file is parsed: the notifier imports this module in
:meth:`~airflow_provider_callbell.notifications.callbell.CallbellNotifier.notify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_callbell.transport.caps import exception_text, printable
from airflow_provider_callbell.validation import TEXT_MAX_CHARS
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_2_PLUS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: How much of an exception's text is read: twice what a message can show, so that masking sees
#: every secret in the part that is shown, and a huge text costs nothing.
ERROR_READ_CHARS = 2 * TEXT_MAX_CHARS
#: What starts each line of an exception's text in a summary (a quote in WhatsApp): no line of it can
#: pass for the headline or the link, which the provider writes.
ERROR_LINE_PREFIX = "> "
#: The longest link kept; Airflow's are a few hundred characters.
_LINK_MAX_CHARS = 1000


def _as_is(text: str) -> str:
    """No masking: what :meth:`CallbackEvent.summary` does without a ``mask``."""
    return text


#: Outcome -> (icon, what happened), for the default summary.
_WORDING: dict[str, tuple[str, str]] = {
    "success": ("✅", "succeeded"),
    "failed": ("❌", "failed"),
    "up_for_retry": ("🔁", "failed and will be retried"),
    "upstream_failed": ("❌", "did not run: an upstream task failed"),
    "skipped": ("⏭️", "was skipped"),
}


@dataclass(frozen=True)
class CallbackEvent:
    """What a callback's context says happened, read once from whichever kind of context it is.

    Task callbacks get the task instance's context; DAG-level callbacks get the context of the run's
    last relevant task instance plus a ``reason`` (``success``, ``task_failure``, ...); a Deadline
    Alert gets ``{"dag_run": {...}, "deadline": {...}}``.
    """

    level: Literal["task", "dag", "deadline", "hitl"]
    outcome: str  # a task instance state, "success"/"failed" for a DAG run, or "deadline_missed"
    dag_id: str
    run_id: str
    task_id: str | None = None
    map_index: int = -1
    try_number: int | None = None
    max_tries: int | None = None
    error: str | None = None
    log_url: str | None = None
    detail: str | None = None  # the DAG's failure reason, or the deadline
    request: HITLRequest | None = None  # what a Human-in-the-loop task asks

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> CallbackEvent:
        ti = context.get("ti")
        raw_state = getattr(ti, "state", None)  # an enum, or a plain str on some paths
        state = str(getattr(raw_state, "value", raw_state)) if raw_state else None
        dag = context.get("dag")
        dag_id = str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", "?"))
        run_id = str(context.get("run_id") or getattr(ti, "run_id", "?"))
        if "deadline" in context:
            dag_run = context.get("dag_run") or {}
            return cls(
                level="deadline",
                outcome="deadline_missed",
                dag_id=str(dag_run.get("dag_id", dag_id)),
                run_id=str(dag_run.get("dag_run_id", dag_run.get("run_id", run_id))),
                detail=str(context["deadline"].get("deadline_time", "")),
            )
        if "reason" in context:  # only DAG-level callbacks carry a reason
            reason = str(context["reason"])
            failed = reason != "success"
            # Name the task only when it is known to have failed the run: Airflow 3.2+ hands that task
            # instance (without its state) for a task failure; Airflow 2.x (with its state) and 3.0-3.1
            # (without) hand the run's last task instance, whichever it is.
            known_to_fail = state == "failed" or (state is None and AIRFLOW_V_3_2_PLUS)
            failed_ti = ti if reason == "task_failure" and known_to_fail else None
            return cls(
                level="dag",
                outcome="failed" if failed else "success",
                dag_id=dag_id,
                run_id=run_id,
                task_id=getattr(failed_ti, "task_id", None),
                log_url=_log_url(failed_ti),
                detail=reason,
            )
        map_index = getattr(ti, "map_index", None)
        exception = context.get("exception")
        # A Human-in-the-loop task calls its notifiers while it runs; its own callbacks come later.
        request = HITLRequest.from_context(context) if state in (None, "running") and not exception else None
        return cls(
            level="hitl" if request else "task",
            outcome=state or "unknown",
            dag_id=dag_id,
            run_id=run_id,
            task_id=getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?"),
            map_index=map_index if isinstance(map_index, int) else -1,
            try_number=getattr(ti, "try_number", None),
            max_tries=getattr(ti, "max_tries", None),
            error=_error_text(exception),
            log_url=_log_url(ti),
            request=request,
        )

    @property
    def key(self) -> str:
        """The default dedupe key: the DAG for DAG-level callbacks, the task (instance) for task ones."""
        if self.level == "dag":
            return self.dag_id
        if self.level == "deadline":
            return f"{self.dag_id}.deadline"
        return f"{self.dag_id}.{self.task_id}" + (f".{self.map_index}" if self.map_index >= 0 else "")

    def summary(self, mask: Callable[[str], str] = _as_is) -> str:
        """The default message: what happened, the error, the log link; at most 4096 characters.

        :param mask: removes secrets from text (the notifier's: Airflow's secrets masker and the
            connection's token); every part goes through it before anything is cut.
        """
        icon, verb = _WORDING.get(self.outcome, ("🔔", f"is {self.outcome}"))
        if self.level == "deadline":
            headline = f"⏰ DAG {self.dag_id} missed its deadline ({self.detail}) in run {self.run_id}"
            return _fit(mask, headline)
        if self.level == "dag":
            headline = f"{icon} DAG {self.dag_id} {verb} in run {self.run_id}"
            if self.outcome == "failed":
                failed_task = f"; failed task: {self.task_id}" if self.task_id else ""
                headline += f" ({self.detail}{failed_task})"
            return _fit(mask, headline, log_url=self.log_url)
        task = f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else self.task_id
        if self.request is not None:
            headline = f"🙋 DAG {self.dag_id}: task {task} needs your input (run {self.run_id})"
            return _fit(
                mask, headline, self.request.details(), self.request.link, link_label="Respond in Airflow"
            )
        tries = (
            f" (try {self.try_number} of {self.max_tries + 1})"
            if self.try_number and self.max_tries  # only worth saying when retries are configured
            else ""
        )
        headline = f"{icon} DAG {self.dag_id}: task {task} {verb} in run {self.run_id}{tries}"
        return _fit(mask, headline, _quoted(self.error) if self.error else None, self.log_url)


@dataclass(frozen=True)
class HITLRequest:
    """What a Human-in-the-loop task (standard provider, Airflow 3.1+) asks, read from the task itself.

    Read by duck typing, so that nothing here imports the standard provider (absent on Airflow 2.x).
    """

    subject: str
    body: str | None
    options: tuple[str, ...]
    multiple: bool = False
    defaults: tuple[str, ...] = ()
    timeout: str | None = None  # ISO 8601, when the defaults are taken
    link: str | None = None  # the task's "Required actions" page in Airflow's UI

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> HITLRequest | None:
        task = context.get("task")
        make_link = getattr(task, "generate_link_to_ui_from_context", None)
        options = getattr(task, "options", None)
        if not callable(make_link) or not isinstance(options, (list, tuple)):
            return None
        try:
            link = make_link(context=context)
        except Exception:  # no [api] base_url: a request without its link beats no request
            link = None
        extra = getattr(task, "hitl_summary_extra", None)
        timeout = extra.get("timeout_datetime") if isinstance(extra, dict) else None
        body = getattr(task, "body", None)
        return cls(
            subject=str(getattr(task, "subject", "")),
            body=str(body) if body else None,
            options=tuple(str(option) for option in options),
            multiple=bool(getattr(task, "multiple", False)),
            defaults=tuple(str(d) for d in getattr(task, "defaults", None) or ()),
            timeout=str(timeout) if timeout else None,
            link=link if isinstance(link, str) else None,
        )

    def details(self) -> str:
        """Subject, body, options and defaults, one part per line."""
        choose = " (one or more)" if self.multiple else ""
        lines = [self.subject, self.body or "", f"Options{choose}: {', '.join(self.options)}"]
        if self.defaults:
            when = f" by {self.timeout}" if self.timeout else ""
            lines.append(f"Without an answer{when}: {', '.join(self.defaults)}")
        return "\n".join(line for line in lines if line)


def _log_url(ti: Any) -> str | None:
    try:
        url = getattr(ti, "log_url", None)
    except Exception:  # it reads the config; a summary without a link beats no summary
        return None
    return url if isinstance(url, str) else None


def _error_text(exception: Any) -> str | None:
    """What the context's ``exception`` says, never raising: an exception's ``__str__`` is anyone's code."""
    if isinstance(exception, BaseException):
        return exception_text(exception)[:ERROR_READ_CHARS]
    try:
        return str(exception)[:ERROR_READ_CHARS] if exception else None
    except Exception:  # a summary without the error beats no summary
        return type(exception).__name__


def _quoted(error: str) -> str:
    """An exception's text for a summary: control characters escaped, each line quoted."""
    lines = printable(error, limit=ERROR_READ_CHARS, keep_newlines=True).split("\n")
    return "\n".join(ERROR_LINE_PREFIX + line for line in lines)


def _fit(
    mask: Callable[[str], str],
    headline: str,
    body: str | None = None,
    log_url: str | None = None,
    link_label: str = "Log",
) -> str:
    """Join the parts of a summary within the limit: the headline, the body, the link on the last line.

    Each part is masked before it is cut (a cut secret would no longer be found), and escaped: the
    headline and the link are one line each. The link always survives: it is the last line, starting
    with its label, and the body is shortened first, then the headline.
    """
    tail = f"\n{link_label}: {printable(mask(log_url), limit=_LINK_MAX_CHARS)}" if log_url else ""
    headline = printable(mask(headline), limit=TEXT_MAX_CHARS - len(tail))
    if body:
        room = TEXT_MAX_CHARS - len(headline) - len(tail) - 1  # 1 for the newline before the body
        body = printable(mask(body), limit=room, keep_newlines=True) if room > 1 else ""
        headline = f"{headline}\n{body}" if body else headline
    return headline + tail
