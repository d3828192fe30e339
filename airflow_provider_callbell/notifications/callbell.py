"""Tell someone how a DAG run or a task went, from an Airflow callback, through Callbell.

Nothing here imports ``requests``, ``httpx`` or the hook at module level: a DAG file that attaches a
notifier to its callbacks pays only for this module.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.validation import MESSAGE_FIELDS, TEXT_MAX_CHARS, check_literal_fields
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_2_PLUS, BaseNotifier, Variable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import jinja2
    from airflow.sdk import Context


#: Every Airflow Variable the notifier writes is named ``callbell_notifier.<dedupe key>``.
STATE_VARIABLE_PREFIX = "callbell_notifier."
_VARIABLE_KEY_MAX_CHARS = 250  # the length of Airflow's variable.key column
_UNSAFE_KEY_CHARS = re.compile(r"[^\w.-]")

#: Outcome -> (icon, what happened), for the default summary.
_WORDING: dict[str, tuple[str, str]] = {
    "success": ("✅", "succeeded"),
    "failed": ("❌", "failed"),
    "up_for_retry": ("🔁", "failed and will be retried"),
    "upstream_failed": ("❌", "did not run: an upstream task failed"),
    "skipped": ("⏭️", "was skipped"),
}
#: Outcome -> health, for ``only_on_change``; outcomes not listed (a deadline, a running task) are
#: always news.
_HEALTH: dict[str, str] = {
    "success": "ok",
    "skipped": "ok",
    "failed": "failing",
    "up_for_retry": "failing",
    "upstream_failed": "failing",
}


class CallbellNotifier(CallbellHookMixin, BaseNotifier):
    """
    Send a Callbell message from an Airflow callback: "the pipeline is done", or "it broke, and why".

    Takes the message fields of ``CallbellSendMessageOperator``, every one templated and rendered with
    the callback's context; those given as literals are checked when the DAG file is parsed, so that a
    wrong phone number is a DAG import error rather than an alert found broken when it is needed.
    Without ``content`` it sends a summary of what happened, cut to 4096 characters::

        ❌ DAG etl: task load failed in run scheduled__2026-01-01T00:00:00+00:00 (try 3 of 3)
        ValueError: 12 rows without a customer id
        Log: https://airflow.example.com/dags/etl/runs/scheduled__2026-01-01T00:00:00%2B00:00/tasks/load?try_number=3

    With a ``template_uuid`` and no ``content``, the summary becomes the template's placeholder value,
    which is how to alert outside WhatsApp's 24-hour window.

    Works in task callbacks (``on_failure_callback``, ``on_success_callback``, ``on_retry_callback``,
    ...), in DAG-level callbacks (which the scheduler's DAG processor runs, not the worker), and awaited
    from the triggerer (Deadline Alerts, Airflow 3.1+): the async path runs the same send in a thread.

    In ``notifiers=`` of a Human-in-the-loop task (``HITLOperator``, ``ApprovalOperator``, ... of the
    standard provider, Airflow 3.1+), the default text is the request itself: the subject, the body,
    the options (and the defaults taken at the timeout) and the link to respond in Airflow's UI::

        🙋 DAG publish: task approve needs your input (run manual__2026-01-01T00:00:00+00:00)
        Publish the sales numbers?
        1234 rows, 3 regions.
        Options: Approve, Reject
        Respond in Airflow: https://airflow.example.com/dags/publish/runs/manual__.../tasks/approve/required_actions?map_index=-1

    .. code-block:: python

        notify = CallbellNotifier(to="{{ var.value.on_call_phone }}", only_on_change=True)
        DAG(..., on_success_callback=notify, on_failure_callback=notify)

    Alert fatigue: ``quiet_retries`` drops the message of a try that Airflow will retry;
    ``only_on_change`` sends only when a key's health changes (the first failure, then the recovery);
    ``dedupe_window`` sends at most one message per key within the window. The last two remember, per
    key, the health the last message told and when it went out, as JSON in the Airflow Variable
    ``callbell_notifier.<key>`` (in Airflow's metadata database, visible to every worker and the DAG
    processor). The key defaults to ``<dag_id>`` for DAG-level callbacks and ``<dag_id>.<task_id>``
    (plus ``.<map_index>`` for mapped tasks) for task callbacks. The Variable is overwritten in place,
    never grows, and stays until deleted (``airflow variables delete callbell_notifier.<key>`` resets
    it). ``only_on_change`` compares with the health the last message told, so attach the notifier to
    both the success and the failure callback.

    :param to: phone number (WhatsApp) or platform identifier of the recipient. (templated)
    :param type: ``text``, ``image``, ``document``, ``audio`` or ``video``. (templated)
    :param content: the message's content; default: a summary of what happened. (templated)
    :param from_: channel type; defaults to the connection's ``from`` extra, else ``whatsapp``. (templated)
    :param bsuid: WhatsApp Business Suite User ID, instead of ``to``. (templated)
    :param channel_uuid: sending channel; defaults to the connection's extra. (templated)
    :param template_uuid: approved template to send. (templated)
    :param optin_contact: must be ``True`` with a template: the contact opted in. (templated)
    :param template_values: values of the template's placeholders ``{{1}}``, ``{{2}}``... (templated)
    :param assigned_user: e-mail of the team member to assign the conversation to. (templated)
    :param team_uuid: team to assign the conversation to. (templated)
    :param fields: extra objects in the answer: ``contact``, ``conversation``. (templated)
    :param bot_status: ``bot_start`` or ``bot_end``. (templated)
    :param metadata: up to 10 string pairs echoed in webhooks; never put secrets there. (templated)
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param only_on_change: send only when the key's health changes: a failure after successes (or
        as the first outcome seen), a success after a failure.
    :param quiet_retries: send nothing for a try that Airflow will retry; the last try still counts.
    :param dedupe_window: at most one message per key within this time (a ``timedelta`` or seconds).
    :param dedupe_key: the key that ``only_on_change`` and ``dedupe_window`` count by; characters
        other than letters, digits, ``_``, ``.`` and ``-`` become ``_``. (templated)
    """

    template_fields: Sequence[str] = (*MESSAGE_FIELDS, "dedupe_key")

    def __init__(
        self,
        *,
        to: str | None = None,
        type: str = "text",
        content: Mapping[str, Any] | str | None = None,
        from_: str | None = None,
        bsuid: str | None = None,
        channel_uuid: str | None = None,
        template_uuid: str | None = None,
        optin_contact: bool | None = None,
        template_values: Sequence[str] | str | None = None,
        assigned_user: str | None = None,
        team_uuid: str | None = None,
        fields: str | Sequence[str] | None = None,
        bot_status: str | None = None,
        metadata: Mapping[str, str] | str | None = None,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        only_on_change: bool = False,
        quiet_retries: bool = False,
        dedupe_window: timedelta | float | None = None,
        dedupe_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # ``context``, when awaited from the triggerer
        self.to = to
        self.type = type
        self.content = content
        self.from_ = from_
        self.bsuid = bsuid
        self.channel_uuid = channel_uuid
        self.template_uuid = template_uuid
        self.optin_contact = optin_contact
        self.template_values = template_values
        self.assigned_user = assigned_user
        self.team_uuid = team_uuid
        self.fields = fields
        self.bot_status = bot_status
        self.metadata = metadata
        self.callbell_conn_id = callbell_conn_id
        self.only_on_change = only_on_change
        self.quiet_retries = quiet_retries
        self.dedupe_window = (
            dedupe_window.total_seconds() if isinstance(dedupe_window, timedelta) else dedupe_window
        )
        self.dedupe_key = dedupe_key
        # A wrong literal is a DAG import error, not an alert found broken when it is needed. Without
        # content the message is the summary, made when the callback fires.
        check_literal_fields(
            "CallbellNotifier",
            {name: getattr(self, name) for name in MESSAGE_FIELDS},
            unknown=() if content is not None else ("content",),
        )

    def __call__(self, *args: Any) -> None:
        # BaseNotifier renders the template fields in place, once and for good; but one parsed DAG
        # serves several callbacks (the DAG processor runs a batch of them, ``airflow dags test`` runs
        # every task in one process), so render a copy each time and keep the templates.
        BaseNotifier.__call__(copy.copy(self), *args)

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        # ``airflow dags test`` (Airflow 3.3) runs DAG-level callbacks with the scheduler's
        # SerializedDAG as ``dag``, which cannot make a Jinja environment; BaseNotifier would fail
        # there. Airflow's default environment renders the same templates (without the DAG's own
        # user_defined_macros, which the serialized DAG does not carry anyway).
        if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
            jinja_env = self.get_template_env()
        super().render_template_fields(context, jinja_env)

    def notify(self, context: Context) -> None:
        """Send the message, unless an alert-fatigue option says this outcome is not news."""
        event = CallbackEvent.from_context(context)
        if self.quiet_retries and event.outcome == "up_for_retry":
            self.log.info("No Callbell notification for %s: Airflow will retry it (quiet_retries)", event.key)
            return
        if not self.only_on_change and self.dedupe_window is None:
            self._send(event)  # nothing to remember: no Variable is read or written
            return
        key = _state_key(self.dedupe_key or event.key)
        before = self._recall(key)
        health = _HEALTH.get(event.outcome)
        now = time.time()
        why_quiet = self._why_quiet(before, health, now)
        if why_quiet:
            # Nothing is remembered either: the health stays what the last message told, so a
            # recovery kept quiet by dedupe_window is still news at the first success after the window.
            self.log.info("No Callbell notification for %s: %s", key, why_quiet)
            return
        self._send(event)  # if it raises, nothing is remembered and the next callback tries again
        self._remember(key, _Memory(health=health or before.health, notified_at=now), event.run_id)

    def _why_quiet(self, before: _Memory, health: str | None, now: float) -> str | None:
        """Why this outcome is not news for the key, or ``None`` when it is.

        With nothing remembered the key counts as healthy: a first failure is news, a first success
        is not.
        """
        if self.only_on_change and health is not None and health == (before.health or "ok"):
            return f"still {health} (only_on_change)"
        if self.dedupe_window is not None and now - (before.notified_at or 0) < self.dedupe_window:
            return f"a message went out less than {self.dedupe_window:g} s ago (dedupe_window)"
        return None

    async def async_notify(self, context: Context) -> None:
        """Send from async code (the triggerer): the same :meth:`notify`, in a thread.

        The hook's send and the Variable look-ups are synchronous; a thread keeps them off the event
        loop, where Airflow would refuse them.
        """
        await asyncio.to_thread(self.notify, context)

    def _send(self, event: CallbackEvent) -> None:
        message = {name: getattr(self, name) for name in MESSAGE_FIELDS}
        if message["content"] is None:
            message["content"] = {"text": event.summary()}
        self.hook.send_message(**message)

    def _recall(self, key: str) -> _Memory:
        try:
            # The default goes by position: Airflow 3 names it ``default``, Airflow 2 ``default_var``.
            return _Memory.from_json(Variable.get(key, None, deserialize_json=True))
        except Exception as err:  # a broken state store must not swallow an alert
            self.log.warning("Cannot read Variable %s (%s); notifying as if it were empty", key, err)
            return _Memory()

    def _remember(self, key: str, memory: _Memory, run_id: str) -> None:
        try:
            Variable.set(
                key,
                memory.to_json(run_id),
                description="State of a Callbell notifier (only_on_change, dedupe_window); safe to delete",
                serialize_json=True,
            )
        except Exception as err:  # the message went out; only the memory of it is lost
            self.log.warning("Cannot write Variable %s: %s", key, err)


send_callbell_notification = CallbellNotifier


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
            error=f"{type(exception).__name__}: {exception}"
            if isinstance(exception, BaseException)
            else (str(exception) if exception else None),
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

    def summary(self) -> str:
        """The default message: what happened, the error, the log link; at most 4096 characters."""
        icon, verb = _WORDING.get(self.outcome, ("🔔", f"is {self.outcome}"))
        if self.level == "deadline":
            return _fit(f"⏰ DAG {self.dag_id} missed its deadline ({self.detail}) in run {self.run_id}")
        if self.level == "dag":
            headline = f"{icon} DAG {self.dag_id} {verb} in run {self.run_id}"
            if self.outcome == "failed":
                failed_task = f"; failed task: {self.task_id}" if self.task_id else ""
                headline += f" ({self.detail}{failed_task})"
            return _fit(headline, log_url=self.log_url)
        task = f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else self.task_id
        if self.request is not None:
            headline = f"🙋 DAG {self.dag_id}: task {task} needs your input (run {self.run_id})"
            return _fit(headline, self.request.details(), self.request.link, link_label="Respond in Airflow")
        tries = (
            f" (try {self.try_number} of {self.max_tries + 1})"
            if self.try_number and self.max_tries  # only worth saying when retries are configured
            else ""
        )
        headline = f"{icon} DAG {self.dag_id}: task {task} {verb} in run {self.run_id}{tries}"
        return _fit(headline, self.error, self.log_url)


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


@dataclass(frozen=True)
class _Memory:
    """What the notifier remembers about one key, as JSON in one Airflow Variable."""

    health: str | None = None  # "ok" or "failing": what the last message told, for only_on_change
    notified_at: float | None = None  # Unix time of the last message sent, for dedupe_window

    @classmethod
    def from_json(cls, value: Any) -> _Memory:
        if not isinstance(value, dict):
            return cls()
        notified = value.get("notified_at")
        return cls(
            health=value.get("health"),
            notified_at=datetime.fromisoformat(notified).timestamp() if notified else None,
        )

    def to_json(self, run_id: str) -> dict[str, Any]:
        """The Variable's value; ``run_id`` only tells a person reading it which run wrote it last."""
        notified = self.notified_at
        return {
            "health": self.health,
            "notified_at": datetime.fromtimestamp(notified, tz=timezone.utc).isoformat()
            if notified
            else None,
            "run_id": run_id,
        }


def _state_key(key: str) -> str:
    """The Variable name for a dedupe key: URL-safe characters only, within Airflow's 250."""
    name = STATE_VARIABLE_PREFIX + _UNSAFE_KEY_CHARS.sub("_", key)
    if len(name) > _VARIABLE_KEY_MAX_CHARS:
        name = STATE_VARIABLE_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    return name


def _log_url(ti: Any) -> str | None:
    try:
        url = getattr(ti, "log_url", None)
    except Exception:  # it reads the config; a summary without a link beats no summary
        return None
    return url if isinstance(url, str) else None


def _fit(headline: str, error: str | None = None, log_url: str | None = None, link_label: str = "Log") -> str:
    """Join the parts of a summary, shortening the error first so the log link survives the limit."""
    tail = f"\n{link_label}: {log_url}" if log_url else ""
    if error:
        room = TEXT_MAX_CHARS - len(headline) - len(tail) - 1  # 1 for the newline before the error
        error = error if len(error) <= room else error[: max(room - 1, 0)] + "…"
        headline = f"{headline}\n{error}" if room > 0 else headline
    text = headline + tail
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"
