"""Wait for a Callbell message's delivery status, or for an answer, in the triggerer (no worker slot)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellError,
    CallbellMessageFailedError,
    error_event,
)
from airflow_provider_callbell.message_status import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_TARGET_STATUSES,
    check_status_sets,
    message_outcome,
)
from airflow_provider_callbell.replies import (
    MAX_PAGES_PER_POLL,
    ReplyCheck,
    ReplyRule,
    check_replies,
    log_check,
)
from airflow_provider_callbell.version_compat import BaseTrigger, TriggerEvent

#: The first poll comes within this many seconds (or one poll interval, if shorter) of the start, and
#: each later one after the poll interval give or take ``POLL_JITTER``. Hundreds of triggers that
#: start together (a triggerer restart) would otherwise poll in one burst for ever after: one long
#: stall of the event loop they share, and a spike against Callbell's rate limit, at every interval.
START_SPREAD = 1.0
POLL_JITTER = 0.1

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from airflow_provider_callbell.hooks.callbell import CallbellHook


class CallbellMessageStatusTrigger(BaseTrigger):
    """
    Poll ``GET /messages/status/:uuid`` until the message's status settles what a sensor waits for.

    :class:`~airflow_provider_callbell.sensors.callbell.CallbellMessageStatusSensor` defers to it in
    deferrable mode. Each poll decides with the same rule as the sensor's poke
    (:func:`~airflow_provider_callbell.message_status.message_outcome`); the trigger fires one event
    and stops:

    - ``{"event": "status", "message": {"uuid", "status", "messageStatusPayload"}}`` when the status
      reached a target or a failure status; the sensor turns it into its result or its error;
    - ``{"event": "timeout", "status": <last status seen or None>}`` once ``end_time`` has passed;
    - ``{"event": "error", "reason", "status_code", "endpoint", "body"}`` on any other
      :class:`~airflow_provider_callbell.exceptions.CallbellError`: Callbell refused the request for
      good (a refused token, an unknown message), its answer was unusable, or the connection is
      misconfigured; retrying cannot help. ``body`` is a redacted excerpt of the answer.

    No answer (none within the deadline included), ``429`` and ``5xx`` are transient: the trigger
    logs them and asks again at the next poll, until ``end_time``. Polls are spread: the first
    comes within a second of the start, the next ones every ``poll_interval`` give or take 10%
    (see ``START_SPREAD``). One HTTP client serves every poll
    of a run and is closed when the run ends. The serialized form holds only these plain arguments;
    the token is read from the connection by the hook each time the trigger starts.

    :param message_uuid: the message to follow.
    :param end_time: Unix time after which the trigger gives up with a timeout event.
    :param target_statuses: statuses that end the wait successfully.
    :param failure_statuses: statuses that end it with an error.
    :param poll_interval: seconds between two requests.
    :param callbell_conn_id: the Airflow connection holding the API token.
    """

    def __init__(
        self,
        *,
        message_uuid: str,
        end_time: float,
        target_statuses: Sequence[str] = DEFAULT_TARGET_STATUSES,
        failure_statuses: Sequence[str] = DEFAULT_FAILURE_STATUSES,
        poll_interval: float = 60.0,
        callbell_conn_id: str = "callbell_default",
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.message_uuid = message_uuid
        self.end_time = end_time
        self.target_statuses, self.failure_statuses = check_status_sets(target_statuses, failure_statuses)
        self.poll_interval = poll_interval
        self.callbell_conn_id = callbell_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "message_uuid": self.message_uuid,
                "end_time": self.end_time,
                "target_statuses": list(self.target_statuses),
                "failure_statuses": list(self.failure_statuses),
                "poll_interval": self.poll_interval,
                "callbell_conn_id": self.callbell_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in _with_one_client(self.callbell_conn_id, self._poll):
            yield event

    async def _poll(self, hook: CallbellHook) -> AsyncIterator[TriggerEvent]:
        last_status: str | None = None
        await asyncio.sleep(min(random.uniform(0, min(self.poll_interval, START_SPREAD)), self._remaining()))
        while True:
            try:
                message = await hook.aget_message_status(self.message_uuid)
            except CallbellError as err:
                if not (isinstance(err, CallbellAPIError) and err.is_transient):
                    yield _event(error_event(err))
                    return
                self.log.warning("Asking again in %s s: %s", self.poll_interval, err)
            else:
                status = message.get("status")
                if status != last_status:
                    self.log.info("Callbell message %s is %s", self.message_uuid, status)
                    last_status = status
                if self._settled(message):
                    yield _event(
                        {
                            "event": "status",
                            "message": {
                                "uuid": self.message_uuid,
                                "status": status,
                                "messageStatusPayload": message.get("messageStatusPayload"),
                            },
                        }
                    )
                    return
            remaining = self._remaining()
            if remaining <= 0:
                yield _event({"event": "timeout", "status": last_status})
                return
            jitter = random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
            await asyncio.sleep(min(self.poll_interval * jitter, remaining))

    def _remaining(self) -> float:
        return max(self.end_time - time.time(), 0.0)

    def _settled(self, message: dict[str, Any]) -> bool:
        """Whether the sensor's rule has an answer (a result or an error) for this status."""
        try:
            return message_outcome(message, self.target_statuses, self.failure_statuses) is not None
        except CallbellMessageFailedError:
            return True  # the sensor raises it, with Callbell's reason, when it resumes


async def _with_one_client(
    conn_id: str, poll: Callable[[CallbellHook], AsyncIterator[TriggerEvent]]
) -> AsyncIterator[TriggerEvent]:
    """Run ``poll`` with one hook, whose one async client is closed when the run ends (cancelled too)."""
    from airflow_provider_callbell.hooks.callbell import CallbellHook

    hook = CallbellHook(conn_id)
    try:
        async for event in poll(hook):
            yield event
    finally:
        await hook.aclose()


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


class CallbellReplyTrigger(BaseTrigger):
    """
    Poll a contact's conversation until an accepted answer arrives, for a deferred reply sensor.

    :class:`~airflow_provider_callbell.sensors.callbell.CallbellReplySensor` defers to it. It finds
    the contact of ``to`` once (``GET /contacts/phone/:number``), then reads
    ``GET /contacts/:uuid/messages`` every ``poll_interval`` seconds as far as the question (or
    ``since``): one request per poll while nothing new arrived. Each poll decides with the sensor's
    rule (:func:`~airflow_provider_callbell.replies.check_replies`); the trigger fires one event and
    stops:

    - ``{"event": "reply", "reply": {"text", "choice", "from", "createdAt"}}``: the sensor's result;
    - ``{"event": "reprompt", "contact_uuid", "since", "end_time"}``: a wrong answer awaits its
      reprompt. The trigger only reads; the sensor sends the reprompt from the worker and defers again
      with these values, and the conversation itself shows which wrong answers were reprompted;
    - ``{"event": "timeout"}`` once ``end_time`` has passed;
    - ``{"event": "error", "reason", "status_code", "endpoint", "body"}`` when Callbell refused for good.

    No answer, ``429`` and ``5xx`` are logged and asked again at the next poll. The serialized form
    holds only these plain arguments (ids, the rule, times), never the token.

    :param to: the phone number that must answer.
    :param end_time: Unix time after which the trigger gives up with a timeout event.
    :param after_message_uuid: only answers listed after this sent message count.
    :param since: without ``after_message_uuid``, Unix time from which answers count.
    :param contact_uuid: the contact of ``to``, when already known.
    :param channel_uuid: the channel the contact is looked up on.
    :param choices: accepted answers (or ``pattern``, or neither: any answer counts).
    :param pattern: a regular expression an accepted answer contains.
    :param reprompt: the reprompt text, to recognise the wrong answers already reprompted.
    :param poll_interval: seconds between two polls.
    :param callbell_conn_id: the Airflow connection holding the API token.
    """

    def __init__(
        self,
        *,
        to: str,
        end_time: float,
        after_message_uuid: str | None = None,
        since: float | None = None,
        contact_uuid: str | None = None,
        channel_uuid: str | None = None,
        choices: Sequence[str] | None = None,
        pattern: str | None = None,
        reprompt: str | None = None,
        poll_interval: float = 60.0,
        callbell_conn_id: str = "callbell_default",
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.to = to
        self.end_time = end_time
        self.after_message_uuid = after_message_uuid
        self.since = since
        self.contact_uuid = contact_uuid
        self.channel_uuid = channel_uuid
        self.rule = ReplyRule.build(choices, pattern, reprompt)
        self.poll_interval = poll_interval
        self.callbell_conn_id = callbell_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "to": self.to,
                "end_time": self.end_time,
                "after_message_uuid": self.after_message_uuid,
                "since": self.since,
                "contact_uuid": self.contact_uuid,
                "channel_uuid": self.channel_uuid,
                "choices": list(self.rule.choices) if self.rule.choices else None,
                "pattern": self.rule.pattern,
                "reprompt": self.rule.reprompt,
                "poll_interval": self.poll_interval,
                "callbell_conn_id": self.callbell_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in _with_one_client(self.callbell_conn_id, self._poll):
            yield event

    async def _poll(self, hook: CallbellHook) -> AsyncIterator[TriggerEvent]:
        last: ReplyCheck | None = None
        while True:
            try:
                check = await self._check(hook)
                if check != last:  # one log line per change, not per poll
                    log_check(self.log, check, self.to, self.after_message_uuid)
                    last = check
            except CallbellError as err:
                if not (isinstance(err, CallbellAPIError) and err.is_transient):
                    yield _event(error_event(err))
                    return
                self.log.warning("Asking again in %s s: %s", self.poll_interval, err)
            else:
                if check.reply is not None:
                    self.log.info("%s answered %r", self.to, check.reply["text"])
                    yield _event({"event": "reply", "reply": check.reply})
                    return
                if check.needs_reprompt:
                    yield _event(
                        {
                            "event": "reprompt",
                            "contact_uuid": self.contact_uuid,
                            "since": self.since,
                            "end_time": self.end_time,
                        }
                    )
                    return
            remaining = self.end_time - time.time()
            if remaining <= 0:
                yield _event({"event": "timeout"})
                return
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def _check(self, hook: CallbellHook) -> ReplyCheck:
        """The sensor's ``_check``, over the async client: one request per poll once the contact is known."""
        if self.contact_uuid is None:
            contact = await hook.aget_contact_by_phone(self.to, self.channel_uuid)
            if contact is None:
                return ReplyCheck(reference_found=False)  # nothing is listed without a contact
            self.contact_uuid = contact["uuid"]
        since = None if self.since is None else datetime.fromtimestamp(self.since, timezone.utc)
        messages = [
            message
            async for message in hook.alist_contact_messages(
                self.contact_uuid,
                stop_at_uuid=self.after_message_uuid,
                since=since,
                max_pages=MAX_PAGES_PER_POLL,
            )
        ]
        return check_replies(messages, self.rule, self.after_message_uuid)
