from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellAuthError,
    CallbellConnectionConfigError,
    CallbellMessageFailedError,
    CallbellValidationError,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor
from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger
from airflow_provider_callbell.version_compat import AirflowFailException, AirflowSensorTimeout
from tests.compat import TaskDeferred, import_string
from tests.helpers import BASE_URL, UUID

STATUS_URL = f"{BASE_URL}/messages/status/{UUID}"


def sensor(**kwargs: Any) -> CallbellMessageStatusSensor:
    return CallbellMessageStatusSensor(task_id="wait", message_uuid=UUID, **kwargs)


def message(status: str, reason: str | None = None) -> dict[str, Any]:
    payload = {"reason": reason} if reason else {}
    return {"message": {"uuid": UUID, "status": status, "messageStatusPayload": payload}}


def deferred(task: CallbellMessageStatusSensor) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as excinfo:
        task.execute({})  # type: ignore[arg-type]
    return excinfo.value


def run_deferred(task: CallbellMessageStatusSensor) -> Any:
    """Defer, run the trigger as the triggerer would (rebuilt from serialize()), then resume."""
    classpath, kwargs = deferred(task).trigger.serialize()
    trigger = import_string(classpath)(**kwargs)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return task.execute_complete({}, asyncio.run(first_event()))  # type: ignore[arg-type]


def outcome(call: Any) -> tuple[Any, ...]:
    """What a run ended with: its result, or the error's type (and text, except for timeouts)."""
    try:
        return ("result", call())
    except AirflowSensorTimeout:
        return (AirflowSensorTimeout,)
    except Exception as err:
        return (type(err), str(err))


class TestArguments:
    def test_message_uuid_is_templated(self):
        assert tuple(CallbellMessageStatusSensor.template_fields) == ("message_uuid",)

    def test_defaults(self):
        task = sensor()
        assert (task.target_statuses, task.failure_statuses) == (("delivered", "read"), ("failed",))
        assert task.callbell_conn_id == "callbell_default"
        assert task.deferrable is False

    def test_deferrable_default_follows_airflow_config(self):
        code = (
            "from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor as S; "
            "print(S(task_id='w', message_uuid='adf3d1216d4c4dcd908199d6700f2381').deferrable)"
        )
        env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split()[-1] == "True"

    def test_wrong_statuses_fail_at_parse_time(self):
        with pytest.raises(
            CallbellValidationError, match="target_statuses must be Callbell message statuses"
        ):
            sensor(target_statuses=("delivred",))

    @pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
    def test_bad_uuid_fails_before_any_request(self, callbell_conn, requests_mock, deferrable):
        task = CallbellMessageStatusSensor(
            task_id="wait", message_uuid="{{ ti.xcom_pull('send') }}", deferrable=deferrable
        )
        task.message_uuid = "None"  # as Airflow renders it when the XCom is missing
        with pytest.raises(CallbellValidationError, match=r"^message_uuid must be a Callbell message uuid"):
            task.execute({})  # type: ignore[arg-type]
        assert requests_mock.call_count == 0


class TestPoke:
    @pytest.mark.parametrize(
        ("status", "done"),
        [
            pytest.param("enqueued", False, id="enqueued"),
            pytest.param("sent", False, id="sent"),
            pytest.param("delivered", True, id="delivered"),
            pytest.param("read", True, id="read"),
            pytest.param("mismatch", False, id="mismatch"),
        ],
    )
    def test_status(self, callbell_conn, requests_mock, status, done):
        requests_mock.get(STATUS_URL, json=message(status))
        result = sensor().poke({})  # type: ignore[arg-type]
        assert bool(result) is done
        assert result.xcom_value == (status if done else None)

    @pytest.mark.parametrize("status", ["failed", "deleted"])
    def test_final_status_fails_with_the_reason(self, callbell_conn, requests_mock, status):
        requests_mock.get(STATUS_URL, json=message(status, reason="number not on WhatsApp"))
        with pytest.raises(CallbellMessageFailedError) as excinfo:
            sensor().poke({})  # type: ignore[arg-type]
        assert (excinfo.value.status, excinfo.value.reason) == (status, "number not on WhatsApp")

    @pytest.mark.parametrize("status_code", [429, 500, 503])
    def test_transient_error_keeps_waiting(self, callbell_conn, requests_mock, status_code):
        requests_mock.get(STATUS_URL, [{"status_code": status_code}, {"json": message("read")}])
        task = sensor()
        assert not task.poke({})  # type: ignore[arg-type]
        assert task.poke({}).xcom_value == "read"  # type: ignore[arg-type, union-attr]

    def test_refused_token_fails_at_once(self, callbell_conn, requests_mock):
        requests_mock.get(STATUS_URL, status_code=401)
        with pytest.raises(CallbellAuthError):
            sensor().poke({})  # type: ignore[arg-type]

    def test_execute_returns_the_status_for_xcom(self, callbell_sandbox):
        uuid = CallbellHook().send_message("+31612345678", content={"text": "x"})["uuid"]
        task = CallbellMessageStatusSensor(task_id="wait", message_uuid=uuid, poke_interval=0.05, timeout=5)
        assert task.execute({}) == "delivered"  # type: ignore[arg-type]


class TestDeferrable:
    def test_defers_to_the_trigger_bounded_by_timeout(self):
        task = sensor(
            deferrable=True,
            timeout=600,
            poke_interval=20,
            target_statuses="read",
            failure_statuses=("failed", "mismatch"),
            callbell_conn_id="callbell_ops",
        )
        before = time.time()
        deferral = deferred(task)
        assert deferral.method_name == "execute_complete"
        assert deferral.timeout == timedelta(seconds=600)
        trigger = deferral.trigger
        assert isinstance(trigger, CallbellMessageStatusTrigger)
        _, kwargs = trigger.serialize()
        assert before + 600 <= kwargs.pop("end_time") <= time.time() + 600
        assert kwargs == {
            "message_uuid": UUID,
            "target_statuses": ["read"],
            "failure_statuses": ["failed", "mismatch"],
            "poll_interval": 20,
            "callbell_conn_id": "callbell_ops",
            "connected": False,
        }

    def test_against_sandbox(self, callbell_sandbox):
        uuid = CallbellHook().send_message("+31612345678", content={"text": "x"})["uuid"]
        task = CallbellMessageStatusSensor(
            task_id="wait", message_uuid=uuid, poke_interval=0.05, timeout=5, deferrable=True
        )
        assert run_deferred(task) == "delivered"

    def test_error_event_raises_the_typed_error_poke_mode_raises(self, callbell_conn, requests_mock):
        requests_mock.get(STATUS_URL, status_code=401, text="bad token")
        with pytest.raises(CallbellAuthError) as poke_error:
            sensor().poke({})  # type: ignore[arg-type]
        event = {
            "event": "error",
            "reason": poke_error.value.reason,
            "status_code": 401,
            "endpoint": f"GET /messages/status/{UUID}",
            "body": "bad token",
        }
        with pytest.raises(CallbellAuthError) as deferred_error:
            sensor().execute_complete({}, event)  # type: ignore[arg-type]
        assert str(deferred_error.value) == str(poke_error.value)

    def test_a_config_error_in_the_triggerer_fails_the_task_without_retries(self, monkeypatch):
        """The connection the triggerer reads may differ from the workers': its error keeps its type."""
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps({"conn_type": "callbell"}))
        trigger = CallbellMessageStatusTrigger(message_uuid=UUID, end_time=time.time() + 5)

        async def first_event() -> dict[str, Any]:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")

        event = asyncio.run(first_event())
        with pytest.raises(CallbellConnectionConfigError, match="has no API token") as excinfo:
            sensor().execute_complete({}, event)  # type: ignore[arg-type]
        assert isinstance(excinfo.value, AirflowFailException)

    def test_timeout_event(self):
        with pytest.raises(
            AirflowSensorTimeout, match=r"reached none of delivered, read .*last status: sent"
        ):
            sensor().execute_complete({}, {"event": "timeout", "status": "sent"})  # type: ignore[arg-type]


class TestPokeAndDeferrableAgree:
    """Every status, and an unknown message, through both paths: the same result or the same error."""

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(message("enqueued"), id="enqueued"),
            pytest.param(message("sent"), id="sent"),
            pytest.param(message("delivered"), id="delivered"),
            pytest.param(message("read"), id="read"),
            pytest.param(message("failed", reason="blocked by user"), id="failed"),
            pytest.param(message("mismatch"), id="mismatch"),
            pytest.param(message("deleted"), id="deleted"),
            pytest.param(None, id="unknown-message-404"),
        ],
    )
    def test_same_outcome(self, callbell_conn, requests_mock, async_answers, answer):
        answers, _ = async_answers
        if answer is None:
            requests_mock.get(STATUS_URL, status_code=404, text="not found")
            answers.append(httpx.Response(404, text="not found"))
        else:
            requests_mock.get(STATUS_URL, json=answer)
            answers.append(httpx.Response(200, json=answer))
        poked = outcome(lambda: sensor(timeout=0, poke_interval=0).execute({}))  # type: ignore[arg-type]
        resumed = outcome(lambda: run_deferred(sensor(timeout=0, poke_interval=0, deferrable=True)))
        assert poked == resumed
        if answer is None:
            assert poked[0] is CallbellAPIError


class TestNeverConnected:
    """A status sensor none of whose pokes ever connected fails after the grace, naming the host."""

    @pytest.fixture
    def nothing_listens(self, monkeypatch: pytest.MonkeyPatch) -> str:
        import socket

        from airflow_provider_callbell import connectivity
        from tests.helpers import set_connection

        monkeypatch.setattr(connectivity, "NEVER_CONNECTED_SECONDS", 0.2)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        set_connection(monkeypatch, host=f"http://127.0.0.1:{port}/v1", extra={"max_retries": 0})
        return f"127.0.0.1:{port}"

    def test_poke_mode(self, nothing_listens: str) -> None:
        from airflow_provider_callbell.exceptions import CallbellConnectError

        started = time.monotonic()
        with pytest.raises(CallbellConnectError, match="is the Callbell sandbox running") as caught:
            sensor(timeout=30, poke_interval=0.1).execute({})
        assert nothing_listens in str(caught.value)
        assert time.monotonic() - started < 10  # not the 30 s timeout

    def test_deferrable_mode(self, nothing_listens: str) -> None:
        from airflow_provider_callbell.exceptions import CallbellConnectError

        task = sensor(timeout=30, poke_interval=0.05, deferrable=True)
        with pytest.raises(TaskDeferred) as deferred:
            task.execute({})
        classpath, kwargs = deferred.value.trigger.serialize()

        async def first() -> dict[str, Any]:
            async for event in import_string(classpath)(**kwargs).run():
                return event.payload
            raise AssertionError("no event")

        event = asyncio.run(first())
        assert event["error_class"] == "CallbellConnectError"
        with pytest.raises(CallbellConnectError, match=nothing_listens):
            task.execute_complete({}, event)

    def test_a_trigger_that_connected_before_keeps_waiting(self, nothing_listens: str) -> None:
        trigger = CallbellMessageStatusTrigger(
            message_uuid=UUID, end_time=time.time() + 0.6, poll_interval=0.05, connected=True
        )

        async def first() -> dict[str, Any]:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        assert asyncio.run(first()) == {"event": "timeout", "status": None}
