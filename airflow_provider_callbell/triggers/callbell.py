"""Wait for a Callbell message's delivery status, or for an answer, in the triggerer (no worker slot)."""

from __future__ import annotations

import asyncio
import random
import time
from abc import abstractmethod
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.connectivity import ConnectWatch
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
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID
from airflow_provider_callbell.replies import (
    MAX_PAGES_PER_POLL,
    ReplyCheck,
    ReplyRule,
    ReplyScan,
    conversation_message,
    log_check,
)
from airflow_provider_callbell.version_compat import BaseTrigger, TriggerEvent

#: The first poll comes within this many seconds (or one poll interval, if shorter) of the start, the
#: last one within as many seconds before the deadline, and each other one after the poll interval
#: give or take ``POLL_JITTER``. Hundreds of triggers that start together (a triggerer restart), or
#: share a deadline (one DAG's sensors), would otherwise poll in one burst: one long stall of the
#: event loop they share, and a spike against Callbell's rate limit.
START_SPREAD = 1.0
POLL_JITTER = 0.1

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from airflow_provider_callbell.hooks.callbell import CallbellHook


class CallbellPollTrigger(BaseTrigger):
    """
    Ask Callbell the same question until it has an answer, a refusal or a deadline: every trigger's loop.

    A subclass says how to ask once (:meth:`poll_once`: the event payload, or ``None`` to ask again)
    and what its timeout event is (:meth:`timeout_event`); this class owns the rest, so both triggers
    wait the same way:

    - the first poll comes within ``min(poll_interval, START_SPREAD)`` random seconds of the start,
      each later one after ``poll_interval`` give or take ``POLL_JITTER`` (10%), every sleep cut to
      the time of the last poll: a random moment within ``min(poll_interval, START_SPREAD)`` seconds
      before ``end_time``. Triggers that start together, or share a deadline, do not poll together
      (500 sensors of one DAG run would otherwise all ask at ``end_time``, in one step of the event
      loop). The last poll never comes more than a second (or a poll interval, if shorter) before
      ``end_time``, where a poke-mode sensor's last poke can come a whole poke interval before its
      timeout: what arrives earlier, the trigger sees as a poking sensor would;
    - a transient :class:`~airflow_provider_callbell.exceptions.CallbellAPIError` (no answer, ``429``,
      ``5xx``) is logged and asked again at the next poll; any other
      :class:`~airflow_provider_callbell.exceptions.CallbellError` ends the run with
      ``{"event": "error", "reason", "status_code", "endpoint", "body"}``
      (:func:`~airflow_provider_callbell.exceptions.error_event`);
    - while no poll has ever connected (refused, host name not found), the run ends with an error
      event (:class:`~airflow_provider_callbell.exceptions.CallbellConnectError`, naming the host)
      after 3 polls and 60 s, whichever is later (:mod:`~airflow_provider_callbell.connectivity`);
      ``connected=True`` says an earlier run already reached Callbell, so that failures stay transient;
    - after the last poll, the run ends with :meth:`timeout_event` at ``end_time``;
    - one hook serves every poll of a run, on the event loop's client for the connection's base URL
      (:mod:`~airflow_provider_callbell.transport.aio`: shared by the loop's triggers, 8 requests at
      once), which the run lets go of when it ends, cancelled included; the last trigger closes it.

    ``serialize()`` gives the class's own path with :meth:`serialize_kwargs` and the three arguments
    below: plain JSON values, never the token, which the hook reads from the connection at each start.

    :param end_time: Unix time after which the trigger gives up with its timeout event.
    :param poll_interval: seconds between two polls.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param connected: an earlier run (or the sensor) already reached Callbell.
    """

    def __init__(
        self,
        *,
        end_time: float,
        poll_interval: float = 60.0,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        connected: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.callbell_conn_id = callbell_conn_id
        self.connect_watch = ConnectWatch(connected=connected)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.serialize_kwargs(),
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "callbell_conn_id": self.callbell_conn_id,
                "connected": self.connect_watch.connected,
            },
        )

    @abstractmethod
    def serialize_kwargs(self) -> dict[str, Any]:
        """The subclass's own ``__init__`` arguments, as plain JSON values."""

    @abstractmethod
    async def poll_once(self, hook: CallbellHook) -> dict[str, Any] | None:
        """Ask once: the payload of the event that ends the run, or ``None`` to ask again later."""

    @abstractmethod
    def timeout_event(self) -> dict[str, Any]:
        """The payload of the event fired once ``end_time`` has passed."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        hook = CallbellHook(self.callbell_conn_id)
        try:
            yield TriggerEvent(await self._poll_until_settled(hook))  # type: ignore[no-untyped-call]
        finally:
            await hook.aclose()  # cancelled too: the run lets go of the shared client

    async def _poll_until_settled(self, hook: CallbellHook) -> dict[str, Any]:
        spread = min(self.poll_interval, START_SPREAD)
        last_poll_at = self.end_time - random.uniform(0, spread)
        await asyncio.sleep(min(random.uniform(0, spread), self._until(last_poll_at)))
        while True:
            try:
                payload = await self.poll_once(hook)
            except CallbellError as err:
                never_connected = self.connect_watch.saw(err, time.time())
                if never_connected is not None:
                    return error_event(never_connected)
                if not (isinstance(err, CallbellAPIError) and err.is_transient):
                    return error_event(err)
                self.log.warning("Asking again in %s s: %s", self.poll_interval, err)
            else:
                self.connect_watch.saw(None, time.time())
                if payload is not None:
                    return payload
            if self._until(last_poll_at) <= 0:  # that was the last poll
                await asyncio.sleep(self._remaining())
                return self.timeout_event()
            jitter = random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
            await asyncio.sleep(min(self.poll_interval * jitter, self._until(last_poll_at)))

    def _remaining(self) -> float:
        return self._until(self.end_time)

    @staticmethod
    def _until(moment: float) -> float:
        """Seconds from now to the Unix time ``moment``; 0 once it has passed."""
        return max(moment - time.time(), 0.0)


class CallbellMessageStatusTrigger(CallbellPollTrigger):
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
    logs them and asks again at the next poll, until ``end_time``. Polls are spread and one HTTP
    client serves a whole run, as :class:`CallbellPollTrigger` says. The serialized form holds only
    these plain arguments; the token is read from the connection by the hook each time the trigger
    starts.

    :param message_uuid: the message to follow.
    :param end_time: Unix time after which the trigger gives up with a timeout event.
    :param target_statuses: statuses that end the wait successfully.
    :param failure_statuses: statuses that end it with an error.
    :param poll_interval: seconds between two requests.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param connected: Callbell was already reached (see :class:`CallbellPollTrigger`).
    """

    def __init__(
        self,
        *,
        message_uuid: str,
        end_time: float,
        target_statuses: Sequence[str] = DEFAULT_TARGET_STATUSES,
        failure_statuses: Sequence[str] = DEFAULT_FAILURE_STATUSES,
        poll_interval: float = 60.0,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        connected: bool = False,
    ) -> None:
        super().__init__(
            end_time=end_time,
            poll_interval=poll_interval,
            callbell_conn_id=callbell_conn_id,
            connected=connected,
        )
        self.message_uuid = message_uuid
        self.target_statuses, self.failure_statuses = check_status_sets(target_statuses, failure_statuses)
        self._last_status: str | None = None

    def serialize_kwargs(self) -> dict[str, Any]:
        return {
            "message_uuid": self.message_uuid,
            "target_statuses": list(self.target_statuses),
            "failure_statuses": list(self.failure_statuses),
        }

    async def poll_once(self, hook: CallbellHook) -> dict[str, Any] | None:
        message = await hook.aget_message_status(self.message_uuid)
        status = message.get("status")
        if status != self._last_status:  # one log line per change, not per poll
            self.log.info("Callbell message %s is %s", self.message_uuid, status)
            self._last_status = status
        if not self._settled(message):
            return None
        return {
            "event": "status",
            "message": {
                "uuid": self.message_uuid,
                "status": status,
                "messageStatusPayload": message.get("messageStatusPayload"),
            },
        }

    def timeout_event(self) -> dict[str, Any]:
        return {"event": "timeout", "status": self._last_status}

    def _settled(self, message: dict[str, Any]) -> bool:
        """Whether the sensor's rule has an answer (a result or an error) for this status."""
        try:
            return message_outcome(message, self.target_statuses, self.failure_statuses) is not None
        except CallbellMessageFailedError:
            return True  # the sensor raises it, with Callbell's reason, when it resumes


class CallbellReplyTrigger(CallbellPollTrigger):
    """
    Poll a contact's conversation until an accepted answer arrives, for a deferred reply sensor.

    :class:`~airflow_provider_callbell.sensors.callbell.CallbellReplySensor` defers to it. It finds
    the contact of ``to`` once (``GET /contacts/phone/:number``), then reads
    ``GET /contacts/:uuid/messages`` every ``poll_interval`` seconds as far as the question (or
    ``since``): one request per poll while nothing new arrived. Each poll decides with the sensor's
    rule (:func:`~airflow_provider_callbell.replies.check_replies`); the trigger fires one event and
    stops:

    - ``{"event": "reply", "reply": {"text", "choice", "from", "createdAt"}}``: the sensor's result;
    - ``{"event": "reprompt", "contact_uuid", "since", "end_time", "wrong", "reprompted"}``: a wrong
      answer awaits its reprompt. The trigger only reads; the sensor sends the reprompt from the
      worker and defers again with these values and ``reprompted=wrong``: its own record of the wrong
      answers reprompted, which holds while the conversation does not list the reprompt yet (the
      conversation's reprompts count too, for a new try that lost the record);
    - ``{"event": "timeout"}`` once ``end_time`` has passed;
    - ``{"event": "error", "reason", "status_code", "endpoint", "body"}`` when Callbell refused for good.

    No answer, ``429`` and ``5xx`` are logged and asked again at the next poll. Polls are spread and
    one HTTP client serves a whole run, as :class:`CallbellPollTrigger` says. The serialized form
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
    :param reprompted: how many wrong answers (oldest first) were already reprompted.
    :param poll_interval: seconds between two polls.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param connected: Callbell was already reached (see :class:`CallbellPollTrigger`).
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
        reprompted: int = 0,
        poll_interval: float = 60.0,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        connected: bool = False,
    ) -> None:
        super().__init__(
            end_time=end_time,
            poll_interval=poll_interval,
            callbell_conn_id=callbell_conn_id,
            connected=connected,
        )
        self.to = to
        self.after_message_uuid = after_message_uuid
        self.since = since
        self.contact_uuid = contact_uuid
        self.channel_uuid = channel_uuid
        self.rule = ReplyRule.build(choices, pattern, reprompt)
        self.reprompted = reprompted
        self._last_check: ReplyCheck | None = None

    def serialize_kwargs(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "after_message_uuid": self.after_message_uuid,
            "since": self.since,
            "contact_uuid": self.contact_uuid,
            "channel_uuid": self.channel_uuid,
            "choices": list(self.rule.choices) if self.rule.choices else None,
            "pattern": self.rule.pattern,
            "reprompt": self.rule.reprompt,
            "reprompted": self.reprompted,
        }

    async def poll_once(self, hook: CallbellHook) -> dict[str, Any] | None:
        check = await self._check(hook)
        if check != self._last_check:  # one log line per change, not per poll
            log_check(self.log, check, self.to, self.after_message_uuid)
            self._last_check = check
        if check.reply is not None:
            self.log.info("%s answered %r", self.to, check.reply["text"])
            return {"event": "reply", "reply": check.reply}
        if check.needs_reprompt:
            return {
                "event": "reprompt",
                "contact_uuid": self.contact_uuid,
                "since": self.since,
                "end_time": self.end_time,
                "wrong": check.wrong,
                "reprompted": self.reprompted,
            }
        return None

    def timeout_event(self) -> dict[str, Any]:
        return {"event": "timeout"}

    async def _check(self, hook: CallbellHook) -> ReplyCheck:
        """The sensor's ``_check``, over the async client: one request per poll once the contact is known."""
        if self.contact_uuid is None:
            contact = await hook.aget_contact_by_phone(self.to, self.channel_uuid)
            if contact is None:
                return ReplyCheck(reference_found=False)  # nothing is listed without a contact
            self.contact_uuid = contact["uuid"]
            self.connect_watch.saw(None, time.time())  # Callbell answered, whatever the next read does
        since = None if self.since is None else datetime.fromtimestamp(self.since, timezone.utc)
        scan = ReplyScan(self.rule, self.after_message_uuid, self.reprompted)
        async for message in hook.alist_contact_messages(
            self.contact_uuid,
            stop_at_uuid=self.after_message_uuid,
            since=since,
            max_pages=MAX_PAGES_PER_POLL,
        ):
            scan.feed(conversation_message(message))  # cut down as read: one page held at a time
        return scan.result()
