"""CallbellHITLResponseOperator and its trigger: the Callbell sandbox answers for Callbell, a fake for Airflow.

:class:`~tests.helpers.FakeAirflowAPI` serves ``POST /auth/token`` and ``.../hitlDetails`` on
loopback as Airflow 3.3 does, so the poke path (requests) and the trigger (httpx) both talk real
HTTP to both sides.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS

if not AIRFLOW_V_3_1_PLUS:
    pytest.skip(
        "Human-in-the-loop came with Airflow 3.1 (tests/operators/test_hitl_compat.py)",
        allow_module_level=True,
    )

from airflow_provider_callbell.exceptions import AirflowAPIError, CallbellAPIError, CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.operators import hitl as hitl_operator
from airflow_provider_callbell.operators.hitl import WAIT_KEY, CallbellHITLResponseOperator
from tests.compat import TaskDeferred, import_string, modules_added_by
from tests.helpers import FakeAirflowAPI

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_callbell.sandbox import CallbellSandbox

PHONE = "+31612345678"
OTHER = "+31687654321"


@pytest.fixture
def approval(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAirflowAPI]:
    fake = FakeAirflowAPI(["Approve", "Reject"])
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
    yield fake
    fake.close()


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAirflowAPI]:
    fake = FakeAirflowAPI(["Email", "SMS", "Slack"], multiple=True)
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
    yield fake
    fake.close()


def bridge(**kwargs: Any) -> CallbellHITLResponseOperator:
    kwargs.setdefault("to", PHONE)
    kwargs.setdefault("settle_seconds", 0)
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 10)
    return CallbellHITLResponseOperator(task_id="answer_from_phone", hitl_task_id="approve", **kwargs)


def context() -> Any:
    return {
        "ti": mock.Mock(dag_id="nightly_report", run_id="manual__2026-12-03T12:00:00+00:00", map_index=-1)
    }


def ask(callbell_sandbox: CallbellSandbox, number: str = PHONE) -> None:
    """What the HITL task's notifier does: the question goes to the phone."""
    CallbellHook().send_message(number, content={"text": "🙋 Publish the report?"})


def texts(callbell_sandbox: CallbellSandbox, number: str = PHONE) -> list[str]:
    return [m["body"]["content"]["text"] for m in callbell_sandbox.messages if m["body"]["to"] == number][1:]


def poke_until_done(task: CallbellHITLResponseOperator, ctx: Any, pokes: int = 1) -> Any:
    """Poke ``pokes`` times; the last result."""
    result = None
    for _ in range(pokes):
        result = task.poke(ctx)
    return result


def run_trigger(deferred: TaskDeferred) -> dict[str, Any]:
    """As the triggerer does: rebuilt from serialize() after a JSON round trip, first event."""
    classpath, kwargs = deferred.trigger.serialize()
    trigger = import_string(classpath)(**json.loads(json.dumps(kwargs)))

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(first())


class TestArguments:
    def test_importing_the_operator_does_not_import_requests_or_httpx(self) -> None:
        watched = ["requests", "httpx", "airflow_provider_callbell.hooks.callbell"]
        assert modules_added_by("airflow_provider_callbell.operators.hitl", watched) == []

    def test_the_constructor_of_the_issue(self) -> None:
        task = CallbellHITLResponseOperator(
            task_id="answer",
            hitl_task_id="approve",
            to=PHONE,
            airflow_api_conn_id="airflow_api",
            poke_interval=30,
        )
        assert (task.hitl_task_id, task.to, task.airflow_api_conn_id) == ("approve", PHONE, "airflow_api")
        assert task.callbell_conn_id == "callbell_default"
        assert task.deferrable  # deferrable by default
        assert tuple(task.template_fields) == ("to", "user_ids")

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"to": "0612345678"}, "to must be a phone number", id="national-number"),
            pytest.param({"to": []}, "non-empty list", id="no-numbers"),
            pytest.param({"hitl_task_id": ""}, "hitl_task_id", id="no-hitl-task"),
            pytest.param({"user_ids": {PHONE: ""}}, "user_ids must map", id="empty-user-id"),
            pytest.param({"user_ids": {"not a phone": "alice"}}, "user_ids must be a phone", id="bad-phone"),
        ],
    )
    def test_bad_literals_fail_when_the_dag_is_parsed(self, kwargs: dict[str, Any], match: str) -> None:
        kwargs = {"task_id": "answer", "hitl_task_id": "approve", "to": PHONE, **kwargs}
        with pytest.raises(CallbellValidationError, match=match) as caught:
            CallbellHITLResponseOperator(**kwargs)
        assert str(caught.value).startswith("task 'answer'")

    def test_templated_values_wait_for_rendering(self, approval: FakeAirflowAPI) -> None:
        task = bridge(to="{{ params.approver }}", user_ids="{{ params.user_ids }}", deferrable=False)
        assert (task.to, task.user_ids) == ("{{ params.approver }}", "{{ params.user_ids }}")  # kept as given
        task.render_template_fields({**context(), "params": {"approver": "0612345678", "user_ids": {}}})
        assert task.to == "0612345678"  # rendered, and only now checked: before any request
        with pytest.raises(CallbellValidationError, match="to must be a phone number"):
            task.execute(context())
        assert approval.patches == []


class StateStore(dict):  # type: ignore[type-arg]
    """Airflow 3.3's ``context["task_state_store"]``, as a sensor in reschedule mode uses it."""

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self[key] = value


class TestRescheduleMode:
    """Each rescheduled poke is a new process: the wait lives in the task state store."""

    def test_the_wait_is_kept_between_pokes(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "hmm")
        store, sent, seen = StateStore(), [], []
        for _ in range(3):  # a new operator per poke; the reprompt sent is not listed yet
            task = bridge(mode="reschedule", deferrable=False, settle_seconds=3600)
            task.hook.send_message = lambda **kw: sent.append(kw["content"]["text"]) or {"uuid": "u"}  # type: ignore[method-assign]
            assert task.poke({**context(), "task_state_store": store}) is False
            seen.append(store[WAIT_KEY]["waiting_since"])
            time.sleep(0.01)
        assert len(sent) == 1  # one reprompt for one wrong answer, not one per poke
        assert store[WAIT_KEY]["reprompted"] == {PHONE: 1}
        assert seen[0] is not None
        assert seen == [seen[0]] * 3  # the settle window did not restart at each poke

    def test_refused_without_a_task_state_store(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(hitl_operator, "AIRFLOW_V_3_3_PLUS", False)
        with pytest.raises(CallbellValidationError, match=r"mode='reschedule' needs Airflow 3.3") as caught:
            bridge(mode="reschedule")
        assert str(caught.value).startswith("task 'answer_from_phone'")
        bridge(mode="poke")  # poke mode keeps its wait on the object


@pytest.mark.usefixtures("approval")
class TestPoke:
    def test_wrong_answer_reprompted_once_then_yes_is_submitted_and_confirmed(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(OTHER, "yes")  # not the approver: never counts
        callbell_sandbox.receive(PHONE, "maybe")
        assert task.poke(ctx) is False
        assert task.poke(ctx) is False  # the conversation shows the reprompt: not a second one
        callbell_sandbox.receive(PHONE, "Yes!")
        done = task.poke(ctx)
        assert done.is_done
        assert approval.patches == [{"chosen_options": ["Approve"], "params_input": {}}]
        assert done.xcom_value == {
            "outcome": "submitted",
            "chosen_options": ["Approve"],
            "from": PHONE,
            "text": "Yes!",
            "createdAt": mock.ANY,
            "responded_by": "hitl-bridge",
        }
        assert texts(callbell_sandbox) == [
            "Sorry, that is not an answer to “Publish the report?”. Please reply with one of: 1 Approve, "
            "2 Reject (or yes / no).",
            "Recorded: Approve for nightly_report / approve",
        ]
        assert texts(callbell_sandbox, OTHER) == []

    def test_the_params_current_values_are_submitted(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        """As the scheduler submits defaults: each param's value, read as HITLRequestView reads it."""
        assert approval.detail is not None
        approval.detail["params"] = {"limit": {"value": 5, "schema": {"type": "integer"}}, "mode": "fast"}
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "yes")
        assert bridge(deferrable=False).poke(context()).is_done
        assert approval.patches == [
            {"chosen_options": ["Approve"], "params_input": {"limit": 5, "mode": "fast"}}
        ]

    def test_a_submission_that_fails_for_now_is_made_again_at_the_next_poke(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "yes")
        approval.patch_failures.append(503)
        assert task.poke(ctx) is False
        assert task.poke(ctx).xcom_value["outcome"] == "submitted"
        assert len(approval.patches) == 2
        assert texts(callbell_sandbox) == ["Recorded: Approve for nightly_report / approve"]  # once

    def test_a_confirmation_that_cannot_be_sent_does_not_fail_a_recorded_answer(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "yes")
        refused = CallbellAPIError(
            "Callbell refused the request", status_code=400, endpoint="POST /messages/send"
        )
        with mock.patch.object(task.hook, "send_message", side_effect=refused):
            done = task.poke(ctx)
        assert done.xcom_value["outcome"] == "submitted"
        assert len(approval.patches) == 1

    def test_one_login_per_task_and_the_token_goes_only_to_airflow(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        for _ in range(3):
            task.poke(ctx)
        assert approval.logins == [{"username": "hitl-bridge", "password": FakeAirflowAPI.PASSWORD}]
        assert set(approval.tokens_seen) == {f"Bearer {approval.token}"}
        seen_by_callbell = json.dumps(callbell_sandbox.requests)
        assert approval.token not in seen_by_callbell
        assert FakeAirflowAPI.PASSWORD not in seen_by_callbell

    def test_an_expired_token_is_fetched_again(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        task.poke(ctx)
        approval.token = "a-new-token-after-expiry-5511"  # the old one is refused from now on
        task.poke(ctx)
        assert len(approval.logins) == 2
        assert approval.tokens_seen[-1] == "Bearer a-new-token-after-expiry-5511"

    def test_a_reply_before_the_request_was_made_does_not_count(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        callbell_sandbox.receive(PHONE, "yes")  # to an earlier run's question
        time.sleep(1.1)  # Callbell's createdAt has whole seconds
        assert approval.detail is not None
        approval.detail["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        assert bridge(deferrable=False).poke(context()) is False
        assert approval.patches == []

    def test_answered_in_airflow_first_ends_without_submitting(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        ask(callbell_sandbox)
        approval.answer(["Reject"], "alice")
        result = bridge(deferrable=False).execute(context())
        assert result == {
            "outcome": "answered_in_airflow",
            "chosen_options": ["Reject"],
            "from": None,
            "text": None,
            "createdAt": None,
            "responded_by": "alice",
        }
        assert approval.patches == []
        assert texts(callbell_sandbox) == []

    def test_timed_out_with_defaults_is_answered_in_airflow_by_nobody(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        approval.answer(["Reject"], None)
        result = bridge(deferrable=False).execute(context())
        assert (result["outcome"], result["responded_by"]) == ("answered_in_airflow", None)

    def test_the_hitl_task_ending_without_answer_ends_cleanly(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        assert approval.detail is not None
        approval.detail["task_instance"]["state"] = "failed"
        result = bridge(deferrable=False).execute(context())
        assert (result["outcome"], result["state"]) == ("ended_without_answer", "failed")

    def test_answered_between_the_poll_and_the_submission(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        """Airflow's 409: the other answer stands, the phone is told, the task succeeds."""
        task, ctx = bridge(deferrable=False), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "yes")
        real_get = task.api.get_hitl_detail

        def answered_meanwhile(*args: Any) -> Any:
            found = real_get(*args)
            if found is not None and not found["response_received"] and len(approval.tokens_seen) >= 2:
                approval.answer(["Reject"], "alice")  # someone clicks in the UI right now
            return found

        with mock.patch.object(task.api, "get_hitl_detail", answered_meanwhile):
            done = task.poke(ctx)
        assert done.xcom_value["outcome"] == "answered_in_airflow"
        assert done.xcom_value["chosen_options"] == ["Reject"]
        assert done.xcom_value["from"] == PHONE
        assert done.xcom_value["responded_by"] == "alice"
        assert approval.patches == [{"chosen_options": ["Approve"], "params_input": {}}]  # refused with 409
        assert texts(callbell_sandbox) == [
            "Not recorded: nightly_report / approve was already answered in Airflow (Reject)"
        ]

    def test_settle_window_holds_a_reply_until_the_task_has_waited(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(deferrable=False, settle_seconds=1.5), context()
        assert approval.detail is not None
        approval.detail["task_instance"]["state"] = "running"  # the notifier runs before the task parks
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "yes")
        assert task.poke(ctx) is False
        assert approval.patches == []
        approval.detail["task_instance"]["state"] = "awaiting_input"
        started = time.monotonic()
        assert task.poke(ctx).is_done
        assert time.monotonic() - started >= 1.5
        assert len(approval.patches) == 1


class TestWhoMayAnswer:
    def test_a_phone_outside_assigned_users_is_refused_before_waiting(
        self, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"], assigned=["alice", "hitl-bridge"])
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
        try:
            with pytest.raises(CallbellValidationError, match=r"\+31612345678 may not answer"):
                bridge(user_ids={PHONE: "mallory"}).execute(context())
        finally:
            fake.close()
        assert callbell_sandbox.requests == []  # no conversation was read
        assert fake.patches == []

    def test_a_phone_mapped_to_an_assigned_user_answers(
        self, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"], assigned=["alice", "hitl-bridge"])
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
        try:
            ask(callbell_sandbox)
            callbell_sandbox.receive(PHONE, "yes")
            assert bridge(deferrable=False, user_ids={"+31 6 1234 5678": "alice"}).poke(context()).is_done
        finally:
            fake.close()
        assert fake.patches == [{"chosen_options": ["Approve"], "params_input": {}}]

    def test_a_service_account_airflow_refuses_fails_with_what_to_fix(
        self, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"], assigned=["alice"])  # hitl-bridge not among them
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
        try:
            ask(callbell_sandbox)
            callbell_sandbox.receive(PHONE, "yes")
            with pytest.raises(AirflowAPIError, match="user 'hitl-bridge' may not do this") as caught:
                bridge(deferrable=False, user_ids={PHONE: "alice"}).poke(context())
        finally:
            fake.close()
        assert caught.value.status_code == 403
        assert FakeAirflowAPI.PASSWORD not in str(caught.value)


class TestMultiple:
    @pytest.mark.parametrize(
        ("answer", "chosen"),
        [
            pytest.param("1, 3", ["Email", "Slack"], id="numbers"),
            pytest.param("slack and sms", ["SMS", "Slack"], id="texts"),
        ],
    )
    def test_poke(
        self, callbell_sandbox: CallbellSandbox, channels: FakeAirflowAPI, answer: str, chosen: list[str]
    ) -> None:
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, answer)
        done = bridge(deferrable=False).poke(context())
        assert done.xcom_value["chosen_options"] == chosen
        assert channels.patches == [{"chosen_options": chosen, "params_input": {}}]
        assert texts(callbell_sandbox) == [f"Recorded: {', '.join(chosen)} for nightly_report / approve"]

    def test_deferred(self, callbell_sandbox: CallbellSandbox, channels: FakeAirflowAPI) -> None:
        task, ctx = bridge(), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "email")
        callbell_sandbox.receive(PHONE, "2 3")
        with pytest.raises(TaskDeferred) as deferred:
            task.execute(ctx)
        event = run_trigger(deferred.value)
        assert (event["event"], event["chosen_options"], event["number"]) == ("reply", ["Email"], PHONE)
        result = bridge().execute_complete(ctx, event)
        assert result["chosen_options"] == ["Email"]  # the oldest accepted answer wins
        assert channels.patches == [{"chosen_options": ["Email"], "params_input": {}}]


@pytest.mark.usefixtures("approval")
class TestDeferred:
    def test_the_trigger_holds_no_secret_and_the_reprompt_goes_from_the_worker(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        task, ctx = bridge(), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "hmm")
        with pytest.raises(TaskDeferred) as deferred:
            task.execute(ctx)
        serialized = json.dumps(deferred.value.trigger.serialize())
        for secret in (FakeAirflowAPI.PASSWORD, approval.token, "test-token"):
            assert secret not in serialized
        event = run_trigger(deferred.value)
        assert (event["event"], event["numbers"]) == ("reprompt", [PHONE])
        assert approval.token not in json.dumps(event)
        with pytest.raises(TaskDeferred) as again:
            bridge().execute_complete(ctx, event)
        assert texts(callbell_sandbox) == [event["text"]]
        resumed = again.value.trigger.serialize()[1]
        assert resumed["contact_uuids"] == event["contact_uuids"]
        assert resumed["reprompted"] == {PHONE: 1}  # the record travels with the wait
        callbell_sandbox.receive(PHONE, "no")
        reply = run_trigger(again.value)
        result = bridge().execute_complete(ctx, reply)
        assert (result["outcome"], result["chosen_options"], result["from"]) == (
            "submitted",
            ["Reject"],
            PHONE,
        )
        assert approval.token not in json.dumps(result)
        assert texts(callbell_sandbox)[-1] == "Recorded: Reject for nightly_report / approve"

    def test_refused_in_the_trigger_when_the_request_appears_later(
        self, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"], assigned=["alice"])
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())
        request, fake.detail = fake.detail, None  # the HITL task has not asked yet
        try:
            with pytest.raises(TaskDeferred) as deferred:
                bridge().execute(context())
            fake.detail = request
            event = run_trigger(deferred.value)
        finally:
            fake.close()
        assert (event["event"], event["error_class"]) == ("error", "CallbellValidationError")
        assert "+31612345678 may not answer" in event["reason"]
        assert callbell_sandbox.requests == []
        with pytest.raises(CallbellValidationError, match="may not answer"):
            bridge().execute_complete(context(), event)

    def test_no_event_sooner_than_settle_seconds_after_the_deferral(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        """Airflow 3.3.2 fails a deferred task resumed before the scheduler saw its worker exit."""
        with pytest.raises(TaskDeferred) as deferred:
            bridge(settle_seconds=1.5).execute(context())
        approval.answer(["Approve"], "alice")  # the event is ready at the first poll
        started = time.monotonic()
        event = run_trigger(deferred.value)
        assert event["event"] == "answered"
        assert time.monotonic() - started >= 1.5

    def test_answered_in_airflow_while_deferred(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        with pytest.raises(TaskDeferred) as deferred:
            bridge().execute(context())
        approval.answer(["Approve"], "alice")
        event = run_trigger(deferred.value)
        assert bridge().execute_complete(context(), event)["outcome"] == "answered_in_airflow"
        assert approval.patches == []

    def test_deferred_again_the_trigger_remembers_callbell_was_reached(
        self, callbell_sandbox: CallbellSandbox, approval: FakeAirflowAPI
    ) -> None:
        """A later outage is transient, not "never connected": ``connected`` travels through events."""
        task, ctx = bridge(), context()
        ask(callbell_sandbox)
        callbell_sandbox.receive(PHONE, "hmm")
        with pytest.raises(TaskDeferred) as deferred:
            task.execute(ctx)
        assert deferred.value.trigger.serialize()[1]["connected"] is False
        event = run_trigger(deferred.value)
        assert (event["event"], event["connected"]) == ("reprompt", True)
        with pytest.raises(TaskDeferred) as again:
            bridge().execute_complete(ctx, event)
        assert again.value.trigger.serialize()[1]["connected"] is True
        assert again.value.trigger.connect_watch.connected
