"""CallbellReplySensor: poke and deferrable, against the sandbox (real HTTP) and requests-mock."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellAuthError, CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.sensors.callbell import CallbellReplySensor
from airflow_provider_callbell.triggers.callbell import CallbellReplyTrigger
from airflow_provider_callbell.version_compat import AirflowSensorTimeout
from tests.compat import TaskDeferred, import_string, modules_added_by
from tests.helpers import BASE_URL, UUID, set_connection

PHONE = "+31612345678"
REPROMPT = "Please reply YES or NO"


def reply_sensor(**kwargs: Any) -> CallbellReplySensor:
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("to", PHONE)
    return CallbellReplySensor(task_id="answer", **kwargs)


def context(start: datetime | None = None) -> Any:
    return {"ti": mock.Mock(start_date=start or datetime.now(timezone.utc))}


def ask(text: str = "Publish? YES or NO") -> str:
    return CallbellHook().send_message(PHONE, content={"text": text})["uuid"]


def sent_texts(callbell_sandbox: Any) -> list[str]:
    return [m["body"]["content"]["text"] for m in callbell_sandbox.messages]


def deferral(task: CallbellReplySensor, ctx: Any = None) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as excinfo:
        task.execute(ctx or context())
    return excinfo.value


def trigger_event(deferred: TaskDeferred) -> dict[str, Any]:
    """Run the trigger as the triggerer does: rebuilt from serialize(), first event."""
    classpath, kwargs = deferred.trigger.serialize()
    trigger = import_string(classpath)(**kwargs)

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


class TestArguments:
    def test_importing_the_sensors_does_not_import_requests_or_httpx(self) -> None:
        watched = ["requests", "httpx", "airflow_provider_callbell.hooks.callbell"]
        assert modules_added_by("airflow_provider_callbell.sensors.callbell", watched) == []

    def test_templated_fields(self) -> None:
        assert tuple(CallbellReplySensor.template_fields) == ("to", "after_message_uuid", "reprompt")

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"choices": ["yes"], "pattern": "y"}, "not both", id="both"),
            pytest.param({"choices": "yes"}, "choices must be", id="choices-string"),
            pytest.param({"pattern": "("}, "pattern is not a valid", id="bad-pattern"),
            pytest.param({"to": "0612345678"}, "to must be a phone number", id="literal-to"),
            pytest.param({"after_message_uuid": "None"}, "after_message_uuid must be", id="literal-after"),
        ],
    )
    def test_bad_literals_fail_when_the_dag_is_parsed(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(CallbellValidationError, match=match) as caught:
            reply_sensor(**kwargs)
        assert str(caught.value).startswith("task ")  # names the task, as a DAG import error

    def test_templated_values_wait_for_rendering(self) -> None:
        templated = {"to": "{{ params.on_call }}", "after_message_uuid": "{{ ti.xcom_pull('ask') }}"}
        task = reply_sensor(**templated)  # no error at parse time: the values are checked once rendered
        assert {name: getattr(task, name) for name in templated} == templated  # kept for Airflow to render
        for name, value in templated.items():  # the same text without the braces is a literal, checked now
            with pytest.raises(CallbellValidationError, match=f"{name} must be"):
                reply_sensor(**{name: value.strip("{} ")})

    @pytest.mark.parametrize("deferrable", [False, True])
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"to": "nobody"}, "to must be a phone number", id="to"),
            pytest.param({"after_message_uuid": "None"}, "after_message_uuid must be", id="after"),
            pytest.param({"reprompt": ""}, "reprompt must be", id="reprompt"),
        ],
    )
    def test_bad_rendered_values_fail_before_any_request(
        self, callbell_conn: None, requests_mock: Any, deferrable: bool, kwargs: dict[str, Any], match: str
    ) -> None:
        task = CallbellReplySensor(task_id="answer", to=PHONE, deferrable=deferrable)
        for name, rendered in kwargs.items():  # as Airflow sets template fields once rendered
            setattr(task, name, rendered)
        with pytest.raises(CallbellValidationError, match=match):
            task.execute(context())
        assert requests_mock.request_history == []


class TestPoke:
    def test_waits_for_the_accepted_answer_and_returns_it(self, callbell_sandbox: Any) -> None:
        question = ask()
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"])
        ctx = context()
        assert task.poke(ctx) is False  # no answer yet
        callbell_sandbox.receive(PHONE, "  YES! ")
        result = task.poke(ctx)
        assert result.is_done  # type: ignore[union-attr]
        xcom = result.xcom_value  # type: ignore[union-attr]
        assert {k: xcom[k] for k in ("text", "choice", "from")} == {
            "text": "  YES! ",
            "choice": "yes",
            "from": "31612345678",
        }
        assert datetime.fromisoformat(xcom["createdAt"].replace("Z", "+00:00"))

    def test_execute_returns_the_reply_for_xcom(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.configure(auto_reply="ack", auto_reply_delay=0.2)
        question = ask("Disk full on db-1: reply ACK")
        result = reply_sensor(after_message_uuid=question, pattern=r"(?i)^ack$").execute(context())
        assert (result["text"], result["choice"]) == ("ack", None)

    def test_answers_before_the_question_are_ignored(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.receive(PHONE, "yes")  # an answer to something else, earlier
        question = ask()
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"])
        assert task.poke(context()) is False
        callbell_sandbox.receive(PHONE, "no")
        assert task.poke(context()).xcom_value["choice"] == "no"  # type: ignore[union-attr]

    def test_reprompt_once_per_wrong_answer(self, callbell_sandbox: Any) -> None:
        question = ask()
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT)
        ctx = context()
        callbell_sandbox.receive(PHONE, "maybe")
        assert task.poke(ctx) is False
        assert task.poke(ctx) is False  # the same wrong answer is not reprompted again
        assert sent_texts(callbell_sandbox).count(REPROMPT) == 1
        callbell_sandbox.receive(PHONE, "dunno")
        callbell_sandbox.receive(PHONE, "what?")
        assert task.poke(ctx) is False
        assert sent_texts(callbell_sandbox).count(REPROMPT) == 2  # two read together share one
        callbell_sandbox.receive(PHONE, "Yes.")
        assert task.poke(ctx).xcom_value["choice"] == "yes"  # type: ignore[union-attr]
        assert sent_texts(callbell_sandbox) == ["Publish? YES or NO", REPROMPT, REPROMPT]

    def test_a_fresh_sensor_does_not_reprompt_again(self, callbell_sandbox: Any) -> None:
        """Reschedule mode makes a new sensor object per poke: the conversation is the memory."""
        question = ask()
        callbell_sandbox.receive(PHONE, "maybe")
        for _ in range(3):
            task = reply_sensor(after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT)
            assert task.poke(context()) is False
        assert sent_texts(callbell_sandbox).count(REPROMPT) == 1

    def test_no_contact_yet_keeps_waiting(self, callbell_sandbox: Any) -> None:
        task = reply_sensor()
        task._since = datetime.now(timezone.utc)
        assert task.poke(context()) is False
        callbell_sandbox.receive(PHONE, "hello")
        assert task.poke(context()).xcom_value["text"] == "hello"  # type: ignore[union-attr]

    def test_paging_stops_at_the_question(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.messages_page_size = 2
        for n in range(10):  # a long history before the question
            callbell_sandbox.receive(PHONE, f"old {n}")
        question = ask()
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"])
        task.poke(context())  # the first poke also looks the contact up
        before = len(callbell_sandbox.requests)
        for _ in range(3):
            assert task.poke(context()) is False
        paths = [r["path"] for r in callbell_sandbox.requests[before:]]
        assert paths == [f"/v1/contacts/{callbell_sandbox.contacts[0]['uuid']}/messages"] * 3  # one page each

    def test_question_is_looked_for_ten_pages_deep_at_most(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.messages_page_size = 1
        question = ask()
        for text in ["yes", *(f"chatter {n}" for n in range(10))]:  # the question is on page 12
            callbell_sandbox.receive(PHONE, text)
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT)
        task._contact_uuid = callbell_sandbox.contacts[0]["uuid"]
        assert task.poke(context()) is False  # the question was not found: nothing counts
        assert [r["path"].endswith("/messages") for r in callbell_sandbox.requests] == [False] + [True] * 10
        assert sent_texts(callbell_sandbox) == ["Publish? YES or NO"]  # and nothing is reprompted

    def test_without_question_answers_count_from_the_task_start(
        self, callbell_conn: None, requests_mock: Any
    ) -> None:
        contact = {"uuid": "414a6d692bd645ed803f2e7ce360d4c8"}
        requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", json={"contact": contact})
        listed = [
            {"text": "yes", "status": "received", "createdAt": "2026-11-30T08:00:10Z", "from": "316"},
            {"text": "old yes", "status": "received", "createdAt": "2026-11-30T07:59:59Z", "from": "316"},
        ]
        requests_mock.get(f"{BASE_URL}/contacts/{contact['uuid']}/messages", json={"messages": listed})
        start = datetime(2026, 11, 30, 8, 0, 0, 400_000, tzinfo=timezone.utc)
        assert reply_sensor(pattern="yes").execute(context(start))["text"] == "yes"
        late_start = datetime(2026, 11, 30, 8, 0, 11, tzinfo=timezone.utc)
        with pytest.raises(AirflowSensorTimeout):
            reply_sensor(pattern="yes", timeout=0.2).execute(context(late_start))

    def test_reschedule_mode_counts_from_the_first_start(self) -> None:
        first = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
        later = first + timedelta(minutes=5)
        ctx = {"ti": mock.Mock(start_date=later)}
        where = "airflow_provider_callbell.sensors.callbell.first_reschedule_date"
        with mock.patch(where, return_value=first) as lookup:  # Airflow's reschedule records
            assert reply_sensor(mode="reschedule", retries=2)._wait_started(ctx) == first  # type: ignore[arg-type]
        lookup.assert_called_once_with(ctx, 2)
        with mock.patch(where, return_value=None):  # the first poke: nothing rescheduled yet
            assert reply_sensor(mode="reschedule")._wait_started(ctx) == later  # type: ignore[arg-type]
        with mock.patch(where) as lookup:
            assert reply_sensor()._wait_started(ctx) == later  # type: ignore[arg-type]
        lookup.assert_not_called()

    @pytest.mark.parametrize("status_code", [429, 500, 503])
    def test_transient_error_keeps_waiting(
        self, monkeypatch: pytest.MonkeyPatch, requests_mock: Any, status_code: int
    ) -> None:
        set_connection(monkeypatch, extra={"max_retries": 0})
        requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", status_code=status_code, text="busy")
        assert reply_sensor(after_message_uuid=UUID).poke(context()) is False

    def test_refused_token_fails_at_once(self, callbell_conn: None, requests_mock: Any) -> None:
        requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", status_code=401, text="bad token")
        with pytest.raises(CallbellAuthError):
            reply_sensor(after_message_uuid=UUID).poke(context())


class TestDeferrable:
    def test_defers_with_ids_only(self, callbell_conn: None) -> None:
        task = reply_sensor(
            after_message_uuid=UUID,
            choices=["yes", "no"],
            reprompt=REPROMPT,
            deferrable=True,
            timeout=600,
            poke_interval=20,
            channel_uuid="c1",
        )
        before = time.time()
        deferred = deferral(task)
        assert deferred.method_name == "execute_complete"
        assert deferred.timeout is not None
        assert deferred.timeout <= timedelta(seconds=600)
        _, kwargs = deferred.trigger.serialize()
        assert before + 600 <= kwargs.pop("end_time") <= time.time() + 600
        assert kwargs == {
            "to": PHONE,
            "after_message_uuid": UUID,
            "since": None,
            "contact_uuid": None,
            "channel_uuid": "c1",
            "choices": ["yes", "no"],
            "pattern": None,
            "reprompt": REPROMPT,
            "reprompted": 0,
            "poll_interval": 20,
            "callbell_conn_id": "callbell_default",
            "connected": False,
        }

    def test_reply_through_the_trigger(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.configure(auto_reply="No!", auto_reply_delay=0.2)
        question = ask()
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"], deferrable=True)
        event = trigger_event(deferral(task))
        assert event["event"] == "reply"
        result = task.execute_complete(context(), event)
        assert (result["text"], result["choice"]) == ("No!", "no")

    def test_wrong_answer_reprompts_from_the_worker_and_defers_again(self, callbell_sandbox: Any) -> None:
        question = ask()
        callbell_sandbox.receive(PHONE, "maybe")
        task = reply_sensor(
            after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT, deferrable=True
        )
        first = deferral(task)
        event = trigger_event(first)
        assert event["event"] == "reprompt"
        assert event["contact_uuid"] == callbell_sandbox.contacts[0]["uuid"]
        with pytest.raises(TaskDeferred) as again:
            task.execute_complete(context(), event)
        assert sent_texts(callbell_sandbox).count(REPROMPT) == 1
        _, kwargs = again.value.trigger.serialize()
        assert kwargs["contact_uuid"] == event["contact_uuid"]
        assert kwargs["end_time"] == first.trigger.serialize()[1]["end_time"]  # the same deadline
        callbell_sandbox.receive(PHONE, "yes")
        final = trigger_event(again.value)
        assert task.execute_complete(context(), final)["choice"] == "yes"
        assert sent_texts(callbell_sandbox).count(REPROMPT) == 1

    def test_without_question_the_start_travels_with_the_trigger(self, callbell_sandbox: Any) -> None:
        start = datetime.now(timezone.utc) - timedelta(seconds=30)
        deferred = deferral(reply_sensor(deferrable=True), context(start))
        assert deferred.trigger.serialize()[1]["since"] == start.timestamp()

    def test_timeout_event(self) -> None:
        with pytest.raises(AirflowSensorTimeout, match=r"No accepted answer from \+31612345678 within 5.0 s"):
            reply_sensor().execute_complete(context(), {"event": "timeout"})

    def test_error_event_raises_the_typed_error(self) -> None:
        event = {"event": "error", "reason": "refused", "status_code": 401, "endpoint": "GET /x", "body": ""}
        with pytest.raises(CallbellAuthError) as caught:
            reply_sensor().execute_complete(context(), event)
        assert caught.value.status_code == 401
        assert isinstance(caught.value, CallbellAPIError)

    def test_trigger_class_is_the_one_deferred_to(self, callbell_conn: None) -> None:
        assert isinstance(deferral(reply_sensor(deferrable=True)).trigger, CallbellReplyTrigger)


class StateStore(dict):  # type: ignore[type-arg]
    """Airflow 3.3's ``context["task_state_store"]``, as a sensor in reschedule mode uses it."""

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self[key] = value


def lagging_sends(task: CallbellReplySensor) -> list[str]:
    """Sends that Callbell accepted but does not list in the conversation yet: the record is all there is."""
    sent: list[str] = []
    task.hook.send_message = lambda **kwargs: sent.append(kwargs["content"]["text"]) or {"uuid": UUID}  # type: ignore[method-assign]
    return sent


class TestRepromptRecord:
    """A reprompt goes out at most once per wrong answer, even while the conversation does not list it."""

    def test_poke_mode(self, callbell_sandbox: Any) -> None:
        question = ask()
        callbell_sandbox.receive(PHONE, "maybe")
        task = reply_sensor(after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT)
        sent = lagging_sends(task)
        for _ in range(3):
            assert task.poke(context()) is False
        assert sent == [REPROMPT]
        callbell_sandbox.receive(PHONE, "dunno")
        assert task.poke(context()) is False
        assert sent == [REPROMPT, REPROMPT]  # a new wrong answer gets its own

    def test_reschedule_mode_keeps_the_record_in_the_task_state_store(self, callbell_sandbox: Any) -> None:
        question = ask()
        callbell_sandbox.receive(PHONE, "maybe")
        store = StateStore()
        sent: list[str] = []
        for _ in range(3):  # a new sensor object per poke, as in reschedule mode
            task = reply_sensor(
                after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT, mode="reschedule"
            )
            task.hook.send_message = lambda **kw: sent.append(kw["content"]["text"]) or {"uuid": UUID}  # type: ignore[method-assign]
            assert task.poke({**context(), "task_state_store": store}) is False
        assert sent == [REPROMPT]
        assert store["callbell_reprompted"] == 1

    def test_deferrable_mode_across_defer_and_resume(self, callbell_sandbox: Any) -> None:
        question = ask()
        callbell_sandbox.receive(PHONE, "maybe")
        task = reply_sensor(
            after_message_uuid=question, choices=["yes", "no"], reprompt=REPROMPT, deferrable=True, timeout=1
        )
        sent = lagging_sends(task)
        event = trigger_event(deferral(task))
        assert (event["event"], event["wrong"], event["reprompted"]) == ("reprompt", 1, 0)
        with pytest.raises(TaskDeferred) as again:
            task.execute_complete(context(), event)
        assert sent == [REPROMPT]
        assert again.value.trigger.serialize()[1]["reprompted"] == 1
        assert trigger_event(again.value) == {"event": "timeout"}  # not a second reprompt event
        assert sent == [REPROMPT]

    def test_a_failed_reprompt_is_not_recorded(self, callbell_sandbox: Any) -> None:
        task = reply_sensor(choices=["yes", "no"], reprompt=REPROMPT, deferrable=True)

        def fails(**_: Any) -> None:
            raise CallbellAPIError("busy", status_code=503)

        task.hook.send_message = fails  # type: ignore[method-assign]
        event = {"event": "reprompt", "contact_uuid": None, "since": 0.0, "end_time": time.time() + 5}
        with pytest.raises(TaskDeferred) as again:
            task.execute_complete(context(), {**event, "wrong": 2, "reprompted": 1})
        assert again.value.trigger.serialize()[1]["reprompted"] == 1  # asked again by the next trigger


class TestNeverConnected:
    @pytest.fixture(autouse=True)
    def short_grace(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_provider_callbell import connectivity

        monkeypatch.setattr(connectivity, "NEVER_CONNECTED_SECONDS", 0.2)

    @pytest.fixture
    def nothing_listens(self, monkeypatch: pytest.MonkeyPatch) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        set_connection(monkeypatch, host=f"http://127.0.0.1:{port}/v1", extra={"max_retries": 0})
        return f"127.0.0.1:{port}"

    def test_poke_mode_fails_naming_the_host(self, nothing_listens: str) -> None:
        from airflow_provider_callbell.exceptions import CallbellConnectError

        started = time.monotonic()
        with pytest.raises(CallbellConnectError, match="is the Callbell sandbox running") as caught:
            reply_sensor(after_message_uuid=UUID, timeout=30, poke_interval=0.1).execute(context())
        assert nothing_listens in str(caught.value)
        assert time.monotonic() - started < 10  # not the 30 s timeout

    def test_reschedule_mode_keeps_count_in_the_task_state_store(self, nothing_listens: str) -> None:
        from airflow_provider_callbell.exceptions import CallbellConnectError

        store = StateStore()
        for _ in range(2):
            assert (
                reply_sensor(mode="reschedule", after_message_uuid=UUID).poke(
                    {**context(), "task_state_store": store}
                )
                is False
            )
        time.sleep(0.25)
        with pytest.raises(CallbellConnectError, match=nothing_listens):
            reply_sensor(mode="reschedule", after_message_uuid=UUID).poke(
                {**context(), "task_state_store": store}
            )

    def test_without_a_state_store_a_rescheduled_sensor_keeps_waiting(self, nothing_listens: str) -> None:
        """Airflow 2.11 has no task state store: each poke starts afresh (documented)."""
        for _ in range(4):
            assert reply_sensor(mode="reschedule", after_message_uuid=UUID).poke(context()) is False
            time.sleep(0.07)

    def test_deferrable_mode(self, nothing_listens: str) -> None:
        from airflow_provider_callbell.exceptions import CallbellConnectError

        task = reply_sensor(after_message_uuid=UUID, deferrable=True, timeout=30, poke_interval=0.05)
        event = trigger_event(deferral(task))
        assert (event["event"], event["error_class"]) == ("error", "CallbellConnectError")
        with pytest.raises(CallbellConnectError, match=nothing_listens):
            task.execute_complete(context(), event)

    def test_once_connected_network_failures_stay_transient(
        self, callbell_conn: None, requests_mock: Any
    ) -> None:
        import requests
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        refused = requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
        requests_mock.get(
            f"{BASE_URL}/contacts/phone/%2B31612345678",
            [{"json": {"contact": {"uuid": "414a6d692bd645ed803f2e7ce360d4c8"}}}, *[{"exc": refused}] * 10],
        )
        requests_mock.get(f"{BASE_URL}/contacts/414a6d692bd645ed803f2e7ce360d4c8/messages", exc=refused)
        task = reply_sensor(after_message_uuid=UUID)
        for _ in range(6):
            assert task.poke(context()) is False
            time.sleep(0.05)
