"""Tell someone how a DAG run or a task went, from an Airflow callback, through Callbell.

Nothing here imports ``requests``, ``httpx`` or the hook at module level, nor the message rules or the
summary: a DAG file that attaches a notifier pays for this module and the list of message fields; the
rules (:mod:`~airflow_provider_callbell.validation`) come when a notifier is built, to check its
literal fields, and the summary (:mod:`~airflow_provider_callbell.callback_events`) when a
callback fires.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_callbell.fields import MESSAGE_FIELDS
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.version_compat import BaseNotifier, Variable, mask_secrets

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import jinja2
    from airflow.sdk import Context

    from airflow_provider_callbell.callback_events import CallbackEvent


#: Every Airflow Variable the notifier writes is named ``callbell_notifier.<dedupe key>``.
STATE_VARIABLE_PREFIX = "callbell_notifier."
_VARIABLE_KEY_MAX_CHARS = 250  # the length of Airflow's variable.key column
_UNSAFE_KEY_CHARS = re.compile(r"[^\w.-]")

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
        > ValueError: 12 rows without a customer id
        Log: https://airflow.example.com/dags/etl/runs/scheduled__2026-01-01T00:00:00%2B00:00/tasks/load?try_number=3

    With a ``template_uuid`` and no ``content``, the summary becomes the template's placeholder value,
    which is how to alert outside WhatsApp's 24-hour window.

    What leaves for a phone is masked as Airflow's logs are: the summary, ``content`` and
    ``template_values`` pass through Airflow's secrets masker and the connection's token redaction. The
    exception's lines are quoted (each starts with ``>``) and escaped, and the log link is always the
    last line, so that an exception's text cannot pass for it.

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
        # content the message is the summary, made when the callback fires. The rules are imported
        # here, not with the module: a DAG file that never builds a notifier skips them.
        from airflow_provider_callbell.validation import check_literal_fields

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
        from airflow_provider_callbell.callback_events import CallbackEvent

        event = CallbackEvent.from_context(context)
        if self.quiet_retries and event.outcome == "up_for_retry":
            self.log.info("No Callbell notification for %s: Airflow will retry it (quiet_retries)", event.key)
            return
        if not self.only_on_change and self.dedupe_window is None:
            self._send(event)  # nothing to remember: no Variable is read or written
            return
        key = _state_key(self.dedupe_key or event.key)
        now = time.time()
        before = self._recall(key, now)
        health = _HEALTH.get(event.outcome)
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
            message["content"] = {"text": event.summary(self._mask)}
        # What leaves for a phone is masked as Airflow's logs are: the summary, and any content or
        # template value rendered from the context (``{{ exception }}`` may quote a password).
        message["content"] = _masked(message["content"], self._mask)
        message["template_values"] = _masked(message["template_values"], self._mask)
        self.hook.send_message(**message)

    def _mask(self, text: str) -> str:
        """``text`` without what Airflow's secrets masker knows, nor the connection's token."""
        return self.hook.redact(mask_secrets(text))

    def _recall(self, key: str, now: float) -> _Memory:
        try:
            # The default goes by position: Airflow 3 names it ``default``, Airflow 2 ``default_var``.
            return _Memory.from_json(Variable.get(key, None, deserialize_json=True), now)
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


class _Memory(NamedTuple):
    """What the notifier remembers about one key, as JSON in one Airflow Variable.

    A ``NamedTuple`` rather than a frozen dataclass: as immutable, and five times cheaper to define
    when a DAG file imports the notifier.
    """

    health: str | None = None  # "ok" or "failing": what the last message told, for only_on_change
    notified_at: float | None = None  # Unix time of the last message sent, for dedupe_window

    @classmethod
    def from_json(cls, value: Any, now: float) -> _Memory:
        """Read the Variable's value; each field that cannot be trusted counts as absent.

        Anyone with access to Variables can write one, and a clock can be wrong: a health other than
        ``ok`` and ``failing`` is absent, and so is a time that is not an ISO 8601 time with its offset
        or that lies after ``now`` (a time in the future would silence every alert until then).
        """
        if not isinstance(value, dict):
            return cls()
        health = value.get("health")
        return cls(
            health=health if health in ("ok", "failing") else None,
            notified_at=_past_time(value.get("notified_at"), now),
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


def _past_time(value: Any, now: float) -> float | None:
    """The Unix time of an ISO 8601 time with its offset, or ``None`` if it is anything else or after ``now``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    timestamp = when.timestamp()
    return timestamp if timestamp <= now else None


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` with ``mask`` applied to every string in it, through mappings and lists."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {key: _masked(item, mask) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item, mask) for item in value]
    return value


def _state_key(key: str) -> str:
    """The Variable name for a dedupe key: URL-safe characters only, within Airflow's 250."""
    name = STATE_VARIABLE_PREFIX + _UNSAFE_KEY_CHARS.sub("_", key)
    if len(name) > _VARIABLE_KEY_MAX_CHARS:
        name = STATE_VARIABLE_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    return name


def __getattr__(name: str) -> Any:
    """``CallbackEvent`` and ``HITLRequest`` from their old place, imported on first use.

    They moved to :mod:`~airflow_provider_callbell.callback_events`, which only a firing callback
    needs: a DAG file that attaches the notifier does not pay for them.
    """
    if name in ("CallbackEvent", "HITLRequest"):
        from airflow_provider_callbell import callback_events

        return getattr(callback_events, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
