"""Answer a Human-in-the-loop task from the phone: the bridge between a WhatsApp reply and Airflow's HITL API.

Airflow 3.1+ only: importing this module on an older Airflow raises an ``ImportError`` that names
the version needed, so a DAG file that uses it shows that error when it is parsed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.hitl import DEFAULT_SETTLE_SECONDS
from airflow_provider_callbell.hooks.airflow_api import DEFAULT_AIRFLOW_API_CONN_ID
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.version_compat import (
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_VERSION,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

if not AIRFLOW_V_3_1_PLUS:
    raise ImportError(
        f"CallbellHITLResponseOperator needs Airflow 3.1 or later (Human-in-the-loop tasks came with "
        f"Airflow 3.1); this is Airflow {AIRFLOW_VERSION}"
    )

#: The key under which a rescheduled bridge keeps its wait (:meth:`HITLWait.state`) in the task state store.
WAIT_KEY = "callbell_hitl_wait"

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_callbell.hitl import HITLWait
    from airflow_provider_callbell.hooks.airflow_api import AirflowAPIHook
    from airflow_provider_callbell.sensors.callbell import _PokeMemory


class CallbellHITLResponseOperator(CallbellHookMixin, BaseSensorOperator):
    """
    Let someone answer a Human-in-the-loop task (``ApprovalOperator``, ``HITLOperator``, ...) by replying on WhatsApp.

    Runs beside the HITL task ``hitl_task_id`` of the same DAG run (same map index by default),
    whose ``CallbellNotifier`` sent the question. It reads the request through Airflow's REST API,
    waits for a reply from ``to`` sent after the request was made, maps it to the request's options
    (an option's text, case and spaces ignored; its number in the list; yes/no for an approval;
    several, "1, 3", when the request allows ``multiple``), submits it with ``PATCH
    .../hitlDetails`` as the ``airflow_api`` connection's user, and confirms on the phone:
    "Recorded: Approve for nightly_report / approve". A reply that matches nothing gets one reprompt
    listing the options. It returns (XCom ``return_value``) ``{"outcome", "chosen_options", "from",
    "text", "createdAt", "responded_by"}``, ``from`` being the number that answered:

    - ``outcome="submitted"``: the phone's answer was recorded;
    - ``outcome="answered_in_airflow"``: someone answered first (the UI, another client; Airflow said
      409), or the request took its defaults at its timeout; nothing was submitted;
    - ``outcome="ended_without_answer"``: the HITL task ended without an answer.

    Who may answer: only replies from ``to`` count (replies from any other number are ignored). When
    the HITL task names ``assigned_users``, each number in ``to`` must map, through ``user_ids``, to
    one of them; otherwise the task fails before waiting: the phone never widens who may approve.
    The connection's user must itself be allowed to answer (see the docs' HITL page).

    An answer is submitted only once the HITL task has been waiting for ``settle_seconds``: on Airflow
    3.3.2 an answer in the first scheduler loop after the task parks makes the scheduler fail it.

    .. code-block:: python

        approve = ApprovalOperator(
            task_id="approve",
            subject="Publish the report?",
            notifiers=[CallbellNotifier(to="+31612345678")],
        )
        answer_from_phone = CallbellHITLResponseOperator(
            task_id="answer_from_phone", hitl_task_id="approve", to="+31612345678"
        )

    :param hitl_task_id: the HITL task of this DAG run to answer.
    :param to: the number (or list of numbers) whose replies count, in international format. (templated)
    :param airflow_api_conn_id: the connection to Airflow's API server (host = its base URL, login and
        password of the Airflow user that answers).
    :param user_ids: phone number -> Airflow user id of the person holding it; required for a HITL
        task that names ``assigned_users``. (templated)
    :param hitl_map_index: the HITL task's map index; default this task's own.
    :param settle_seconds: how long the HITL task must have been waiting before an answer is submitted.
    :param channel_uuid: the Callbell channel the conversation is on.
    :param callbell_conn_id: the Callbell connection.
    :param poke_interval: seconds between two looks at the request and the conversations (in every
        mode; the trigger polls at this interval too).
    :param deferrable: wait in the triggerer (the default) instead of a worker slot.

    In ``mode="reschedule"`` each poke is a new process: the wait (reprompts sent, since when the
    HITL task waits, the contacts found) is kept in Airflow's task state store
    (``context["task_state_store"]``, Airflow 3.3+). Airflow 3.1 and 3.2 have none, so there
    ``mode="reschedule"`` is refused when the DAG is parsed: a wrong answer would be reprompted at
    every poke and the settle window would never end.
    """

    template_fields: Sequence[str] = ("to", "user_ids")
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        hitl_task_id: str,
        to: str | Sequence[str],
        airflow_api_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID,
        user_ids: Mapping[str, str] | None = None,
        hitl_map_index: int | None = None,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        channel_uuid: str | None = None,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poke_interval: float = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        from airflow_provider_callbell.validation import is_templated, raised_for

        with raised_for(f"task {self.task_id!r}"):
            from airflow_provider_callbell.exceptions import CallbellValidationError

            if not isinstance(hitl_task_id, str) or not hitl_task_id:
                raise CallbellValidationError(f"hitl_task_id must be a task id, got {hitl_task_id!r}")
            if self.mode == "reschedule" and not AIRFLOW_V_3_3_PLUS:
                raise CallbellValidationError(
                    f"mode='reschedule' needs Airflow 3.3 or later (its task state store keeps the wait "
                    f"between pokes); this is Airflow {AIRFLOW_VERSION}: use the default (deferrable) "
                    "or mode='poke'"
                )
            if not is_templated(to):
                _numbers(to)
            if user_ids is not None and not is_templated(user_ids):
                _user_ids(user_ids)
        self.hitl_task_id = hitl_task_id
        self.to = to
        self.airflow_api_conn_id = airflow_api_conn_id
        self.user_ids = user_ids
        self.hitl_map_index = hitl_map_index
        self.settle_seconds = settle_seconds
        self.channel_uuid = channel_uuid
        self.callbell_conn_id = callbell_conn_id
        self.deferrable = deferrable
        self._wait: HITLWait | None = None

    @property
    def api(self) -> AirflowAPIHook:
        """The Airflow API hook, made once per task run (its token lives in memory only)."""
        if "_api" not in self.__dict__:
            from airflow_provider_callbell.hooks.airflow_api import AirflowAPIHook

            self.__dict__["_api"] = AirflowAPIHook(self.airflow_api_conn_id)
        api: AirflowAPIHook = self.__dict__["_api"]
        return api

    def _make_wait(self, context: Context, state: Mapping[str, Any] | None = None) -> HITLWait:
        from airflow_provider_callbell.hitl import HITLWait

        state = state if isinstance(state, dict) else None  # an unreadable store: a fresh wait
        ti = context["ti"]
        own_index = getattr(ti, "map_index", -1)
        return HITLWait(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=self.hitl_task_id,
            map_index=self.hitl_map_index if self.hitl_map_index is not None else own_index,
            numbers=_numbers(self.to),
            user_ids=_user_ids(self.user_ids or {}),
            where=f"task {self.task_id!r}",
            settle_seconds=self.settle_seconds,
            channel_uuid=self.channel_uuid,
            contact_uuids=dict((state or {}).get("contact_uuids") or {}),
            waiting_since=(state or {}).get("waiting_since"),
            reprompted=dict((state or {}).get("reprompted") or {}),
            connected=(state or {}).get("connected") is True,
        )

    def execute(self, context: Context) -> Any:
        from airflow_provider_callbell.exceptions import AirflowAPIError

        # A rescheduled poke runs execute() again, in a new process: the wait so far is in the store.
        wait = self._wait = self._make_wait(context, self._memory.recall(self, context, WAIT_KEY))
        # Read the request now: a phone outside assigned_users fails here, before any wait.
        try:
            ended, _ = wait.read_request(self.api.get_hitl_detail(*_ti(wait)))
        except AirflowAPIError as err:
            if not err.is_transient:
                raise
            self.log.warning("Reading the request again at the next poll: %s", err)
            ended = None
        if ended is not None:
            return self._finish(wait, ended)
        if self.deferrable:
            self._defer(wait, time.time() + self.timeout)
        return super().execute(context)

    def _defer(self, wait: HITLWait, end_time: float) -> None:
        from airflow_provider_callbell.triggers.hitl import CallbellHITLTrigger

        self.defer(  # ends this execution; execute_complete runs when the trigger fires
            trigger=CallbellHITLTrigger(
                dag_id=wait.dag_id,
                run_id=wait.run_id,
                task_id=wait.task_id,
                map_index=wait.map_index,
                numbers=wait.numbers,
                end_time=end_time,
                user_ids=wait.user_ids,
                where=wait.where,
                settle_seconds=wait.settle_seconds,
                channel_uuid=wait.channel_uuid,
                poll_interval=self.poke_interval,
                callbell_conn_id=self.callbell_conn_id,
                airflow_api_conn_id=self.airflow_api_conn_id,
                connected=wait.connected,
                **wait.state(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(end_time - time.time(), 0)),
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from airflow_provider_callbell.exceptions import CallbellAPIError

        wait = self._wait = self._wait or self._make_wait(
            context, self._memory.recall(self, context, WAIT_KEY)
        )
        try:
            try:
                event = wait.poll(self.api, self.hook, self.log)
            except CallbellAPIError as err:
                if not err.is_transient:
                    raise
                self.log.warning("Asking again in %s s: %s", self.poke_interval, err)
                return False
            if event is None:
                return False
            result = self._finish(wait, event)
            return False if result is None else PokeReturnValue(is_done=True, xcom_value=result)
        finally:  # a rescheduled poke is a new process: the next one starts from here
            self._memory.keep(self, context, WAIT_KEY, wait.state())

    @cached_property
    def _memory(self) -> _PokeMemory:
        """What a rescheduled poke keeps for the next (the reply sensor's memory, the same way)."""
        from airflow_provider_callbell.sensors.callbell import _PokeMemory

        return _PokeMemory()

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Act on the trigger's event from the worker: submit, reprompt, or end; wait again if needed."""
        from airflow_provider_callbell.exceptions import error_from_event

        if event["event"] == "timeout":
            raise AirflowSensorTimeout(
                f"No answer to {self.hitl_task_id} from {', '.join(_numbers(self.to))} within {self.timeout} s"
            )
        if event["event"] == "error":
            raise error_from_event(event)
        wait = self._make_wait(context, event)
        result = self._finish(wait, event)
        if result is None:  # reprompted, or a submission to try again: wait again
            self._defer(wait, event["end_time"])  # raises TaskDeferred
        assert result is not None
        return result

    def _finish(self, wait: HITLWait, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The result for an event that ends the wait; ``None`` when the wait goes on."""
        kind = event["event"]
        if kind == "answered":
            self.log.info(
                "%s was answered in Airflow (%s) by %s; nothing submitted",
                self.hitl_task_id,
                ", ".join(event["chosen_options"]),
                event["responded_by"] or "its defaults, at its timeout",
            )
            return _result("answered_in_airflow", event["chosen_options"], responded_by=event["responded_by"])
        if kind == "ended":
            self.log.info(
                "%s ended %s without an answer; nothing submitted", self.hitl_task_id, event["state"]
            )
            return _result("ended_without_answer", [], state=event["state"])
        if kind == "reprompt":
            for number in event["numbers"]:
                if self._tell(wait, number, event["text"], "the reprompt"):
                    wait.record_reprompt(number, event["wrong"][number])
            return None
        return self._submit(wait, event)

    def _submit(self, wait: HITLWait, event: Mapping[str, Any]) -> dict[str, Any] | None:
        from airflow_provider_callbell.exceptions import AirflowAPIError
        from airflow_provider_callbell.hitl import HITLRequestView

        number, reply, chosen = event["number"], event["reply"], event["chosen_options"]
        self.log.info("%s answered %r from %s: %s", self.hitl_task_id, reply.get("text"), number, chosen)
        where = f"{wait.dag_id} / {wait.task_id}" + (f"[{wait.map_index}]" if wait.map_index >= 0 else "")
        try:
            detail = self.api.get_hitl_detail(*_ti(wait))
            params_input = HITLRequestView.parse(detail).params_input if detail is not None else {}
            answer = self.api.submit_hitl_response(
                *_ti(wait), chosen_options=chosen, params_input=params_input
            )
        except AirflowAPIError as err:
            if err.status_code == 409:  # answered elsewhere meanwhile: that answer stands
                return self._already_answered(wait, number, reply, where)
            if err.is_transient:
                self.log.warning("Submitting again at the next poll: %s", err)
                return None
            raise
        responded_by = (answer.get("responded_by") or {}).get("name")
        self.log.info("Recorded %s for %s as %s; answered from %s", chosen, where, responded_by, number)
        self._tell(wait, number, f"Recorded: {', '.join(chosen)} for {where}", "the confirmation")
        return _result("submitted", chosen, number=number, reply=reply, responded_by=responded_by)

    def _already_answered(
        self, wait: HITLWait, number: str, reply: Mapping[str, Any], where: str
    ) -> dict[str, Any]:
        """Airflow's 409: someone answered first. Their answer stands; the phone is told so."""
        from airflow_provider_callbell.exceptions import AirflowAPIError

        try:
            detail = self.api.get_hitl_detail(*_ti(wait)) or {}
        except AirflowAPIError as err:  # the answer is known to exist; what it was is a nicety
            self.log.warning("Could not read the answer that came first: %s", err)
            detail = {}
        recorded = [str(option) for option in detail.get("chosen_options") or []]
        responder = detail.get("responded_by_user")
        responded_by = str(responder.get("name")) if isinstance(responder, dict) else None
        self.log.info(
            "%s was answered in Airflow first (%s); %s's answer not submitted", where, recorded, number
        )
        notice = (
            f"Not recorded: {where} was already answered in Airflow ({', '.join(recorded) or 'see Airflow'})"
        )
        self._tell(wait, number, notice, "the notice")
        return _result("answered_in_airflow", recorded, number=number, reply=reply, responded_by=responded_by)

    def _tell(self, wait: HITLWait, number: str, text: str, what: str) -> bool:
        """Send a short message; whether it went. A failure is logged, never fatal: the answer's fate
        does not depend on it (a confirmation after a recorded answer must not fail the task), and a
        reprompt not sent is sent at the next poll."""
        from airflow_provider_callbell.exceptions import CallbellError

        try:
            self.hook.send_message(to=number, content={"text": text}, channel_uuid=wait.channel_uuid)
        except CallbellError as err:
            self.log.warning("Could not send %s to %s: %s", what, number, err)
            return False
        return True


def _ti(wait: HITLWait) -> tuple[str, str, str, int]:
    return wait.dag_id, wait.run_id, wait.task_id, wait.map_index


def _numbers(to: Any) -> tuple[str, ...]:
    from airflow_provider_callbell.exceptions import CallbellValidationError
    from airflow_provider_callbell.validation import validate_phone

    values = [to] if isinstance(to, str) else to
    if not isinstance(values, (list, tuple)) or not values:
        raise CallbellValidationError(f"to must be a phone number or a non-empty list of them, got {to!r}")
    return tuple(dict.fromkeys(validate_phone("to", value) for value in values))


def _user_ids(user_ids: Any) -> dict[str, str]:
    from airflow_provider_callbell.exceptions import CallbellValidationError
    from airflow_provider_callbell.validation import validate_phone

    if not isinstance(user_ids, dict) or not all(isinstance(v, str) and v for v in user_ids.values()):
        raise CallbellValidationError(
            f"user_ids must map phone numbers to Airflow user ids, e.g. {{'+31612345678': 'alice'}}, got {user_ids!r}"
        )
    return {validate_phone("user_ids", number): user_id for number, user_id in user_ids.items()}


def _result(
    outcome: str,
    chosen: Sequence[str],
    *,
    number: str | None = None,
    reply: Mapping[str, Any] | None = None,
    responded_by: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    result = {
        "outcome": outcome,
        "chosen_options": list(chosen),
        "from": number,
        "text": (reply or {}).get("text"),
        "createdAt": (reply or {}).get("createdAt"),
        "responded_by": responded_by,
    }
    if state is not None:
        result["state"] = state
    return result
