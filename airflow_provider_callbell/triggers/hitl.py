"""Wait in the triggerer for a phone to answer a Human-in-the-loop request, or for the request to end.

Airflow 3.1+ only: Human-in-the-loop tasks came with Airflow 3.1; importing this module on an older
Airflow raises an ``ImportError`` that says so.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.hitl import DEFAULT_SETTLE_SECONDS, HITLWait
from airflow_provider_callbell.hooks.airflow_api import DEFAULT_AIRFLOW_API_CONN_ID
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID
from airflow_provider_callbell.triggers.callbell import CallbellPollTrigger
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_VERSION

if not AIRFLOW_V_3_1_PLUS:
    raise ImportError(
        f"CallbellHITLTrigger needs Airflow 3.1 or later (Human-in-the-loop tasks came with Airflow 3.1); "
        f"this is Airflow {AIRFLOW_VERSION}"
    )

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from airflow_provider_callbell.hooks.callbell import CallbellHook
    from airflow_provider_callbell.version_compat import TriggerEvent


class CallbellHITLTrigger(CallbellPollTrigger):
    """
    Poll a HITL request (Airflow's REST API) and the answering phones' conversations (Callbell).

    :class:`~airflow_provider_callbell.operators.hitl.CallbellHITLResponseOperator` defers to it.
    Each poll is :meth:`~airflow_provider_callbell.hitl.HITLWait.apoll`, the same poll as the
    operator's poke; the trigger only reads, and fires one event:

    - ``{"event": "reply", "number", "reply", "chosen_options"}``: an accepted answer, once the HITL
      task has been waiting ``settle_seconds``; the operator submits it from the worker;
    - ``{"event": "reprompt", "numbers", "wrong", "text"}``: a wrong answer awaits its one reprompt;
      the operator sends it, records it (``reprompted``: per number, the ``wrong`` answers reprompted)
      and defers again;
    - ``{"event": "answered", "chosen_options", "responded_by"}``: the request was answered elsewhere
      (the UI, another client), or took its defaults at its timeout;
    - ``{"event": "ended", "state"}``: the HITL task ended without an answer;
    - ``{"event": "timeout"}`` once ``end_time`` has passed; ``{"event": "error", ...}`` for a refusal
      (a phone outside ``assigned_users``, a wrong connection, ...).

    No event is handed over sooner than ``settle_seconds`` after the run started: on Airflow 3.3.2 a
    deferred task resumed before the scheduler has seen the deferring worker exit is failed as
    "state changed externally" (the same race as the HITL task's own).

    Every event but the last two also carries ``contact_uuids``, ``waiting_since``, ``reprompted``,
    ``end_time`` and ``connected`` (Callbell was reached), with which the operator defers again when the wait goes on. Polls are spread, and a
    Callbell that was never reachable ends the run, as
    :class:`~airflow_provider_callbell.triggers.callbell.CallbellPollTrigger` says.

    The serialized form holds ids, numbers, times and connection ids: never a Callbell token, an
    Airflow password or an Airflow token, which the hooks read or fetch at each start.

    :param dag_id: the DAG of the HITL task.
    :param run_id: the DAG run of the HITL task.
    :param task_id: the HITL task.
    :param map_index: the HITL task's map index (``-1`` when it is not mapped).
    :param numbers: the phone numbers whose replies count.
    :param end_time: Unix time after which the trigger gives up with its timeout event.
    :param user_ids: phone number -> Airflow user id, checked against the request's ``assigned_users``.
    :param where: how errors name the bridge task.
    :param settle_seconds: how long the HITL task must have been waiting before an answer is handed on.
    :param channel_uuid: the Callbell channel the contacts are looked up on.
    :param contact_uuids: phone number -> its Callbell contact, once found.
    :param waiting_since: Unix time the HITL task was first seen waiting (``None``: not seen yet).
    :param reprompted: phone number -> how many of its wrong answers (oldest first) were reprompted.
    :param poll_interval: seconds between two polls.
    :param callbell_conn_id: the Airflow connection holding the Callbell token.
    :param airflow_api_conn_id: the connection to Airflow's API server.
    :param connected: Callbell was already reached (see
        :class:`~airflow_provider_callbell.triggers.callbell.CallbellPollTrigger`).
    """

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int,
        numbers: Sequence[str],
        end_time: float,
        user_ids: Mapping[str, str] | None = None,
        where: str = "",
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        channel_uuid: str | None = None,
        contact_uuids: Mapping[str, str] | None = None,
        waiting_since: float | None = None,
        reprompted: Mapping[str, int] | None = None,
        poll_interval: float = 30.0,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        airflow_api_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID,
        connected: bool = False,
    ) -> None:
        super().__init__(
            end_time=end_time,
            poll_interval=poll_interval,
            callbell_conn_id=callbell_conn_id,
            connected=connected,
        )
        self.airflow_api_conn_id = airflow_api_conn_id
        self.wait = HITLWait(
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            numbers=tuple(numbers),
            user_ids=dict(user_ids or {}),
            where=where,
            settle_seconds=settle_seconds,
            channel_uuid=channel_uuid,
            contact_uuids=dict(contact_uuids or {}),
            waiting_since=waiting_since,
            reprompted=dict(reprompted or {}),
            connected=connected,
        )

    def serialize_kwargs(self) -> dict[str, Any]:
        wait = self.wait
        return {
            "dag_id": wait.dag_id,
            "run_id": wait.run_id,
            "task_id": wait.task_id,
            "map_index": wait.map_index,
            "numbers": list(wait.numbers),
            "user_ids": dict(wait.user_ids),
            "where": wait.where,
            "settle_seconds": wait.settle_seconds,
            "channel_uuid": wait.channel_uuid,
            **wait.state(),
            "airflow_api_conn_id": self.airflow_api_conn_id,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_callbell.hooks.airflow_api import AirflowAPIHook

        self._api = AirflowAPIHook(self.airflow_api_conn_id)
        self._started = self.wait.clock()
        try:
            async for event in super().run():
                yield event
        finally:
            await self._api.aclose()  # cancelled too

    async def poll_once(self, hook: CallbellHook) -> dict[str, Any] | None:
        event = await self.wait.apoll(self._api, hook, self.log)
        if event is None:
            return None
        # The deferring worker's exit must reach the scheduler before the task is queued again, or
        # Airflow 3.3.2 fails the task ("state changed externally"): no event sooner than
        # settle_seconds after the run started.
        hold = min(self._started + self.wait.settle_seconds - self.wait.clock(), self._remaining())
        if hold > 0:
            self.log.info("Handing the %s event over in %.0f s", event["event"], hold)
            await asyncio.sleep(hold)
        # Every event carries what the operator needs to wait again: the state, the deadline, and
        # whether Callbell was ever reached (so that a later outage stays transient).
        connected = self.connect_watch.connected or self.wait.connected
        return {**event, **self.wait.state(), "end_time": self.end_time, "connected": connected}

    def timeout_event(self) -> dict[str, Any]:
        return {"event": "timeout"}
