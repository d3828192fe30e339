"""Wait until a sent Callbell message is delivered (or read), or until someone answers it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_callbell.message_status import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_TARGET_STATUSES,
    check_status_sets,
    message_outcome,
)
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.version_compat import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
    first_reschedule_date,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.sdk import Context

    from airflow_provider_callbell.exceptions import CallbellConnectError
    from airflow_provider_callbell.replies import ReplyCheck, ReplyRule

_T = TypeVar("_T")

#: The keys a sensor keeps between pokes (see :class:`_PokeMemory`).
CONNECT_KEY = "callbell_connect"
REPROMPTED_KEY = "callbell_reprompted"


class _PokeMemory:
    """What a sensor remembers from one poke to the next, wherever its pokes run.

    In poke mode every poke runs on the same object: its attributes are enough. In reschedule mode
    each poke is a new process, so the values also go to Airflow's task state store
    (``context["task_state_store"]``, Airflow 3.3+), scoped to this try of this task instance; a new
    try starts afresh. Without a store (Airflow 2.11) a rescheduled sensor remembers nothing across
    pokes: its reprompts then rest on the conversation alone, and a sensor that never connects waits
    out its ``timeout``. Values are written only when they change.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def recall(self, sensor: BaseSensorOperator, context: Context, key: str) -> Any:
        if key not in self._values:
            store = self._store(sensor, context)
            self._values[key] = store.get(key) if store is not None else None
        return self._values[key]

    def keep(self, sensor: BaseSensorOperator, context: Context, key: str, value: Any) -> None:
        if self._values.get(key) == value:
            return
        self._values[key] = value
        store = self._store(sensor, context)
        if store is not None:
            store.set(key, value)

    @staticmethod
    def _store(sensor: BaseSensorOperator, context: Context) -> Any:
        return context.get("task_state_store") if sensor.reschedule else None


class _CallbellWaitMixin:
    """One poke's request, with the sensors' rule for failures: transient ones are logged and asked
    again, and a sensor whose pokes never connected fails after the grace of
    :mod:`~airflow_provider_callbell.connectivity`."""

    poke_interval: float
    log: Any

    @cached_property
    def _memory(self) -> _PokeMemory:
        return _PokeMemory()

    def _ask(self, context: Context, ask: Callable[[], _T]) -> _T | None:
        """``ask()``'s result, or ``None`` after a transient failure (logged once)."""
        from airflow_provider_callbell.exceptions import CallbellAPIError

        try:
            result = ask()
        except CallbellAPIError as err:
            failure = self._saw(context, err)
            if failure is not None:
                raise failure from None
            if not err.is_transient:
                raise
            self.log.warning("Asking again in %s s: %s", self.poke_interval, err)
            return None
        self._saw(context, None)
        return result

    def _saw(self, context: Context, error: BaseException | None) -> CallbellConnectError | None:
        """Record a request's outcome (``None``: Callbell answered); the error to fail with, if any.

        A poke of several requests calls it after each one that was answered, so that one answer is
        enough to count the poke as connected.
        """
        from airflow_provider_callbell.connectivity import ConnectWatch

        sensor: Any = self
        watch = ConnectWatch.from_state(self._memory.recall(sensor, context, CONNECT_KEY))
        failure = watch.saw(error, time.time())
        self._memory.keep(sensor, context, CONNECT_KEY, watch.to_state())
        return failure


class CallbellMessageStatusSensor(_CallbellWaitMixin, CallbellHookMixin, BaseSensorOperator):
    """
    Wait for a sent message to reach a delivery status, e.g. until the on-call person's phone has it.

    Succeeds when the message reaches one of ``target_statuses``, or went past one on the road
    ``enqueued`` → ``sent`` → ``delivered`` → ``read`` (a message already ``read`` satisfies a wait
    for ``delivered``), and returns the status it saw (XCom ``return_value``). A status in
    ``failure_statuses`` fails the task with
    :class:`~airflow_provider_callbell.exceptions.CallbellMessageFailedError`, carrying Callbell's
    reason from ``messageStatusPayload``, without retries: the message's fate will not change. So does
    ``deleted`` unless it is a target. ``mismatch`` (WhatsApp corrected the phone number) counts as
    ``sent``: the message went out, so the sensor keeps waiting for its delivery; list ``mismatch``
    in ``failure_statuses`` to fail on it instead, or in ``target_statuses`` to accept it.

    Failures to ask (no answer, ``429``, ``5xx``) are logged and asked again at the next poke, until
    ``timeout``; a refused token or an unknown message fails at once. If no poke has ever connected
    (connection refused, host name not found), the sensor fails after 3 tries and 60 s, whichever
    comes later, with :class:`~airflow_provider_callbell.exceptions.CallbellConnectError` naming the
    host (see :mod:`~airflow_provider_callbell.connectivity`). Poke, reschedule and deferrable
    modes decide with the same rule; in deferrable mode
    :class:`~airflow_provider_callbell.triggers.callbell.CallbellMessageStatusTrigger` polls from the
    triggerer every ``poke_interval`` seconds until ``timeout``. Delivery statuses exist only on
    WhatsApp Business API and WhatsApp QR API channels.

    .. code-block:: python

        send = CallbellSendMessageOperator(task_id="send", to="+31612345678", content={"text": "Hi"})
        wait = CallbellMessageStatusSensor(
            task_id="wait_for_delivery",
            message_uuid=send.output,  # or "{{ ti.xcom_pull(task_ids='send') }}"
            poke_interval=30,
            timeout=3600,
            deferrable=True,
        )

    :param message_uuid: uuid of the message, as ``CallbellSendMessageOperator`` returns it. (templated)
    :param target_statuses: statuses that end the wait successfully.
    :param failure_statuses: statuses that fail the task.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to Airflow's
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("message_uuid",)
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        message_uuid: str,
        target_statuses: Sequence[str] = DEFAULT_TARGET_STATUSES,
        failure_statuses: Sequence[str] = DEFAULT_FAILURE_STATUSES,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.message_uuid = message_uuid
        self.target_statuses, self.failure_statuses = check_status_sets(target_statuses, failure_statuses)
        self.callbell_conn_id = callbell_conn_id
        self.deferrable = deferrable
        # The rules are imported here, not with the module: a DAG file that never builds a sensor skips them.
        from airflow_provider_callbell.validation import is_templated, raised_for, validate_uuid

        if not is_templated(message_uuid):  # a wrong literal is a DAG import error naming the task
            with raised_for(f"task {self.task_id!r}"):
                validate_uuid("message_uuid", message_uuid)

    def execute(self, context: Context) -> Any:
        from airflow_provider_callbell.validation import validate_uuid

        validate_uuid("message_uuid", self.message_uuid)
        if self.deferrable:
            from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger

            self.defer(  # ends this execution; execute_complete runs when the trigger fires
                trigger=CallbellMessageStatusTrigger(
                    message_uuid=self.message_uuid,
                    end_time=time.time() + self.timeout,
                    target_statuses=self.target_statuses,
                    failure_statuses=self.failure_statuses,
                    poll_interval=self.poke_interval,
                    callbell_conn_id=self.callbell_conn_id,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        message = self._ask(context, lambda: self.hook.get_message_status(self.message_uuid))
        if message is None:
            return False
        self.log.info("Callbell message %s is %s", self.message_uuid, message.get("status"))
        status = message_outcome(message, self.target_statuses, self.failure_statuses)
        return PokeReturnValue(is_done=status is not None, xcom_value=status)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Turn the trigger's event into the same result or error that poke mode gives."""
        from airflow_provider_callbell.exceptions import CallbellError, error_from_event

        if event["event"] == "status":
            status = message_outcome(event["message"], self.target_statuses, self.failure_statuses)
            if status is None:  # only if the DAG's statuses changed while the task was deferred
                raise CallbellError(
                    f"Callbell message {self.message_uuid} is {event['message']['status']!r}, which is "
                    f"neither in target_statuses {self.target_statuses} nor in failure_statuses"
                )
            return status
        if event["event"] == "timeout":
            raise AirflowSensorTimeout(
                f"Callbell message {self.message_uuid} reached none of {', '.join(self.target_statuses)} "
                f"within {self.timeout} s (last status: {event['status']})"
            )
        raise error_from_event(event)


class CallbellReplySensor(_CallbellWaitMixin, CallbellHookMixin, BaseSensorOperator):
    """
    Wait for someone to answer over WhatsApp (or another Callbell channel): an acknowledgement, a YES/NO.

    Succeeds when a message from ``to`` arrives after the question ``after_message_uuid`` (or, without
    it, after the task started) and is accepted: one of ``choices`` (case, surrounding spaces and
    punctuation ignored), a match of ``pattern`` (``re.search``), or with neither any answer. It returns
    (XCom ``return_value``) ``{"text", "choice", "from", "createdAt"}``, ``choice`` being the canonical
    entry of ``choices`` (``None`` without ``choices``). The oldest accepted answer wins; other
    answers are ignored, and each is answered once with ``reprompt`` when it is given, so the person
    learns what to type (wrong answers read in the same poke share one reprompt).

    Callbell lists a contact's messages newest first and gives the customer's messages no uuid, so
    answers are found by their place in that list, above the question, never by the local clock
    alone: pass ``after_message_uuid`` (the send task's XCom) to be exact. Without it, answers count
    from the task's start (its first start in reschedule mode), compared with Callbell's ``createdAt``
    in whole seconds.

    Failures to ask (no answer, ``429``, ``5xx``) are logged and asked again at the next poke; a refused
    token fails at once, and so, after 3 tries and 60 s, does a sensor none of whose pokes ever
    connected (:class:`~airflow_provider_callbell.exceptions.CallbellConnectError`, naming the host).
    Answers are read fail-closed (:mod:`~airflow_provider_callbell.replies`): at most 4,096 characters
    of each, a message whose time cannot be read is no answer, and a reprompt goes out at most once per
    wrong answer, by the sensor's own record as well as the conversation's. ``timeout``, ``soft_fail``, ``mode="reschedule"`` and the other sensor options
    work as usual; deferred, :class:`~airflow_provider_callbell.triggers.callbell.CallbellReplyTrigger`
    polls from the triggerer every ``poke_interval`` seconds and holds only ids, never the token (it
    hands back to the worker for the moment of sending a reprompt).

    .. code-block:: python

        ask = CallbellSendMessageOperator(
            task_id="ask", to="+31612345678", content={"text": "Publish the numbers? Reply YES or NO"}
        )
        answer = CallbellReplySensor(
            task_id="answer",
            to="+31612345678",
            after_message_uuid=ask.output,
            choices=["yes", "no"],
            reprompt="Please reply YES or NO",
            poke_interval=30,
            timeout=3600,
            deferrable=True,
        )

    :param to: who must answer: the phone number the question went to. (templated)
    :param after_message_uuid: only answers listed after this sent message count. (templated)
    :param choices: accepted answers, e.g. ``["yes", "no"]``; the matching entry is returned as ``choice``.
    :param pattern: a regular expression an accepted answer contains (instead of ``choices``).
    :param reprompt: text sent once per wrong answer, e.g. "Please reply YES or NO". (templated)
    :param channel_uuid: the channel the conversation is on; default the connection's ``channel_uuid``
        extra, else Callbell's main WhatsApp channel.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to Airflow's
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("to", "after_message_uuid", "reprompt")
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        to: str,
        after_message_uuid: str | None = None,
        choices: Sequence[str] | None = None,
        pattern: str | None = None,
        reprompt: str | None = None,
        channel_uuid: str | None = None,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # A wrong literal is a DAG import error naming the task; templated values are checked rendered.
        from airflow_provider_callbell.replies import ReplyRule
        from airflow_provider_callbell.validation import (
            is_templated,
            raised_for,
            validate_phone,
            validate_uuid,
        )

        with raised_for(f"task {self.task_id!r}"):
            ReplyRule.build(choices, pattern)
            if not is_templated(to):
                validate_phone("to", to)
            if after_message_uuid is not None and not is_templated(after_message_uuid):
                validate_uuid("after_message_uuid", after_message_uuid)
        self.to = to
        self.after_message_uuid = after_message_uuid
        self.choices = list(choices) if choices is not None else None
        self.pattern = pattern
        self.reprompt = reprompt
        self.channel_uuid = channel_uuid
        self.callbell_conn_id = callbell_conn_id
        self.deferrable = deferrable
        self._contact_uuid: str | None = None
        self._since: datetime | None = None

    @cached_property
    def rule(self) -> ReplyRule:
        """The accepted answers and the reprompt, once ``reprompt`` is rendered."""
        from airflow_provider_callbell.replies import ReplyRule

        return ReplyRule.build(self.choices, self.pattern, self.reprompt)

    def execute(self, context: Context) -> Any:
        from airflow_provider_callbell.validation import validate_phone, validate_uuid

        self.to = validate_phone("to", self.to)
        if self.after_message_uuid is not None:
            validate_uuid("after_message_uuid", self.after_message_uuid)
        self.rule  # noqa: B018  # a bad rendered reprompt fails before waiting
        self._since = None if self.after_message_uuid else self._wait_started(context)
        if self.deferrable:
            self._defer(contact_uuid=None, end_time=time.time() + self.timeout)
        return super().execute(context)

    def _wait_started(self, context: Context) -> datetime:
        """When the wait began: the task's start, or in reschedule mode its first start.

        ``ti.start_date`` moves at every reschedule (on Airflow 3, and under ``airflow dags test`` on
        Airflow 2); Airflow keeps the first one in its reschedule records.
        """
        first = first_reschedule_date(context, self.retries or 0) if self.reschedule else None
        started = first or getattr(context.get("ti"), "start_date", None)
        return started if isinstance(started, datetime) else datetime.now(timezone.utc)

    def _defer(self, contact_uuid: str | None, end_time: float, reprompted: int = 0) -> None:
        from airflow_provider_callbell.triggers.callbell import CallbellReplyTrigger

        self.defer(  # ends this execution; execute_complete runs when the trigger fires
            trigger=CallbellReplyTrigger(
                to=self.to,
                end_time=end_time,
                after_message_uuid=self.after_message_uuid,
                since=None if self._since is None else self._since.timestamp(),
                contact_uuid=contact_uuid,
                channel_uuid=self.channel_uuid,
                choices=self.choices,
                pattern=self.pattern,
                reprompt=self.reprompt,
                reprompted=reprompted,
                connected=contact_uuid is not None,  # a contact was read: Callbell was reached
                poll_interval=self.poke_interval,
                callbell_conn_id=self.callbell_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(end_time - time.time(), 0)),
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        reprompted = self._memory.recall(self, context, REPROMPTED_KEY)
        reprompted = reprompted if isinstance(reprompted, int) else 0
        check = self._ask(context, lambda: self._check(reprompted, context))
        if check is None:
            return False
        if check.needs_reprompt and self._ask(context, self._send_reprompt):
            self._memory.keep(self, context, REPROMPTED_KEY, check.wrong)  # even while not listed yet
        if check.reply is not None:
            self.log.info("%s answered %r", self.to, check.reply["text"])
            return PokeReturnValue(is_done=True, xcom_value=check.reply)
        return False

    def _check(self, reprompted: int = 0, context: Context | None = None) -> ReplyCheck:
        """Read the conversation as far as the question (or the start) and apply the rule.

        Each message is cut down as it is read, so a poke holds one page of the conversation.
        """
        from airflow_provider_callbell.replies import (
            MAX_PAGES_PER_POLL,
            ReplyCheck,
            ReplyScan,
            conversation_message,
            log_check,
        )

        if self._contact_uuid is None:
            contact = self.hook.get_contact_by_phone(self.to, self.channel_uuid)
            if contact is None:
                log_check(self.log, ReplyCheck(reference_found=False), self.to, self.after_message_uuid)
                return ReplyCheck(reference_found=False)
            self._contact_uuid = contact["uuid"]
            if context is not None:
                self._saw(context, None)  # Callbell answered, whatever the conversation's read does
        scan = ReplyScan(self.rule, self.after_message_uuid, reprompted)
        for message in self.hook.list_contact_messages(
            self._contact_uuid,
            stop_at_uuid=self.after_message_uuid,
            since=self._since,
            max_pages=MAX_PAGES_PER_POLL,
        ):
            scan.feed(conversation_message(message))
        check = scan.result()
        log_check(self.log, check, self.to, self.after_message_uuid)
        return check

    def _send_reprompt(self) -> bool:
        if self.reprompt is None:
            return False
        self.hook.send_message(to=self.to, content={"text": self.reprompt}, channel_uuid=self.channel_uuid)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Turn the trigger's event into the result poke mode gives, or reprompt and wait again."""
        from airflow_provider_callbell.exceptions import CallbellAPIError, error_from_event

        if event["event"] == "reply":
            reply: dict[str, Any] = event["reply"]
            return reply
        if event["event"] == "reprompt":
            self._since = (
                None if event["since"] is None else datetime.fromtimestamp(event["since"], timezone.utc)
            )
            reprompted = event.get("reprompted", 0)
            try:
                if self._send_reprompt():
                    reprompted = event.get("wrong", reprompted)  # the trigger's record from now on
            except CallbellAPIError as err:
                if not err.is_transient:
                    raise
                self.log.warning("Sending the reprompt again at the next poll: %s", err)
            self._defer(  # raises TaskDeferred
                contact_uuid=event["contact_uuid"], end_time=event["end_time"], reprompted=reprompted
            )
        if event["event"] == "timeout":
            raise AirflowSensorTimeout(f"No accepted answer from {self.to} within {self.timeout} s")
        raise error_from_event(event)
