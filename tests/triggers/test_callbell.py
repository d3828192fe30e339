"""The trigger, rebuilt from its own ``serialize()`` output and run with asyncio, as the triggerer does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger
from tests.compat import import_string
from tests.helpers import TOKEN, UUID

CLASSPATH = "airflow_provider_callbell.triggers.callbell.CallbellMessageStatusTrigger"


def rebuilt(**kwargs: Any) -> CallbellMessageStatusTrigger:
    """A trigger as the triggerer gets it: made from the serialized form, after a JSON round trip."""
    kwargs.setdefault("end_time", time.time() + 5)
    kwargs.setdefault("poll_interval", 0.05)
    classpath, serialized = CallbellMessageStatusTrigger(**kwargs).serialize()
    return import_string(classpath)(**json.loads(json.dumps(serialized)))


def events(trigger: CallbellMessageStatusTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def status_answer(status: str) -> httpx.Response:
    return httpx.Response(200, json={"message": {"uuid": UUID, "status": status, "messageStatusPayload": {}}})


class TestSerialize:
    def test_round_trip(self):
        trigger = CallbellMessageStatusTrigger(
            message_uuid=UUID,
            end_time=1_900_000_000.5,
            target_statuses=("read",),
            failure_statuses=("failed", "mismatch"),
            poll_interval=15,
            callbell_conn_id="callbell_ops",
        )
        classpath, kwargs = trigger.serialize()
        assert classpath == CLASSPATH
        assert kwargs == {
            "message_uuid": UUID,
            "end_time": 1_900_000_000.5,
            "target_statuses": ["read"],
            "failure_statuses": ["failed", "mismatch"],
            "poll_interval": 15,
            "callbell_conn_id": "callbell_ops",
            "connected": False,
        }
        again = import_string(classpath)(**json.loads(json.dumps(kwargs)))
        assert again.serialize() == (classpath, kwargs)

    def test_holds_no_token(self, callbell_conn):
        _, kwargs = CallbellMessageStatusTrigger(message_uuid=UUID, end_time=0).serialize()
        assert TOKEN not in json.dumps(kwargs)

    def test_statuses_are_checked(self):
        with pytest.raises(CallbellValidationError, match="target_statuses must be"):
            CallbellMessageStatusTrigger(message_uuid=UUID, end_time=0, target_statuses=("delivred",))


class TestAgainstSandbox:
    def test_delivered(self, callbell_sandbox):
        uuid = CallbellHook().send_message("+31612345678", content={"text": "x"})["uuid"]
        assert events(rebuilt(message_uuid=uuid)) == [
            {
                "event": "status",
                "message": {"uuid": uuid, "status": "delivered", "messageStatusPayload": {}},
            }
        ]
        polls = [r for r in callbell_sandbox.requests if r["path"] == f"/v1/messages/status/{uuid}"]
        assert len(polls) >= 2  # it waited through enqueued and sent

    def test_failed_carries_the_reason(self, callbell_sandbox):
        callbell_sandbox.configure(failing_recipients={"+31600000000": "not on WhatsApp"})
        uuid = CallbellHook().send_message("+31600000000", content={"text": "x"})["uuid"]
        (event,) = events(rebuilt(message_uuid=uuid))
        assert event["message"]["status"] == "failed"
        assert event["message"]["messageStatusPayload"] == {"reason": "not on WhatsApp"}

    def test_timeout_reports_the_last_status(self, callbell_sandbox):
        callbell_sandbox.configure(status_interval=60)
        uuid = CallbellHook().send_message("+31612345678", content={"text": "x"})["uuid"]
        started = time.monotonic()
        assert events(rebuilt(message_uuid=uuid, end_time=time.time() + 0.3, poll_interval=10)) == [
            {"event": "timeout", "status": "enqueued"}
        ]
        assert time.monotonic() - started < 2  # the last sleep is cut to the deadline

    def test_unknown_message_ends_with_an_error(self, callbell_sandbox):
        (event,) = events(rebuilt(message_uuid=UUID))
        assert event == {
            "event": "error",
            "error_class": "CallbellAPIError",
            "reason": "Callbell refused the request",
            "status_code": 404,
            "endpoint": f"GET /messages/status/{UUID}",
            "body": '{"error": "Message not found"}',
        }

    def test_wrong_token_ends_with_an_error(self, callbell_sandbox, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            callbell_sandbox.connection_json.replace(callbell_sandbox.token, "wrong-token"),
        )
        (event,) = events(rebuilt(message_uuid=UUID))
        assert (event["event"], event["status_code"]) == ("error", 401)
        assert "wrong-token" not in json.dumps(event)


class TestTransientErrors:
    def test_retried_until_an_answer(self, callbell_conn, async_answers):
        answers, seen = async_answers
        answers.extend(
            [
                httpx.ConnectError("connection refused"),
                httpx.Response(429, text="slow down"),
                httpx.Response(503, text="maintenance"),
                status_answer("sent"),
                status_answer("read"),
            ]
        )
        (event,) = events(rebuilt(message_uuid=UUID))
        assert event["message"]["status"] == "read"
        assert len(seen) == 5

    def test_retried_until_the_deadline(self, callbell_conn, async_answers):
        answers, seen = async_answers
        answers.extend(httpx.Response(502, text="bad gateway") for _ in range(100))
        (event,) = events(rebuilt(message_uuid=UUID, end_time=time.time() + 0.3))
        assert event == {"event": "timeout", "status": None}
        assert 2 <= len(seen) < 100


class TestOneClientPerRun:
    def test_every_poll_shares_one_client_closed_at_the_end(self, callbell_conn, monkeypatch, async_answers):
        answers, seen = async_answers
        answers.extend([status_answer("enqueued"), status_answer("sent"), status_answer("delivered")])
        made: list[httpx.AsyncClient] = []
        factory = httpx.AsyncClient  # the fixture's, answering from the list

        def recording(**kwargs: Any) -> httpx.AsyncClient:
            made.append(factory(**kwargs))
            return made[-1]

        monkeypatch.setattr(httpx, "AsyncClient", recording)
        (event,) = events(rebuilt(message_uuid=UUID))
        assert event["message"]["status"] == "delivered"
        assert len(seen) == 3
        assert len(made) == 1
        assert made[0].is_closed

    def test_closed_when_the_triggerer_cancels_the_run(self, callbell_conn, monkeypatch, async_answers):
        answers, _ = async_answers
        answers.extend(status_answer("enqueued") for _ in range(100))
        made: list[httpx.AsyncClient] = []
        factory = httpx.AsyncClient

        def recording(**kwargs: Any) -> httpx.AsyncClient:
            made.append(factory(**kwargs))
            return made[-1]

        monkeypatch.setattr(httpx, "AsyncClient", recording)

        async def cancel_after_a_poll() -> None:
            task = asyncio.ensure_future(anext(rebuilt(message_uuid=UUID).run()))
            while not made:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_after_a_poll())
        assert made[0].is_closed


class TestAnyProviderError:
    def test_a_config_error_is_an_error_event(self, monkeypatch, async_answers):
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps({"conn_type": "callbell"}))
        (event,) = events(rebuilt(message_uuid=UUID))
        assert event["event"] == "error"
        assert "has no API token" in event["reason"]
        assert event["status_code"] is None
        assert event["error_class"] == "CallbellConnectionConfigError"

    def test_an_unusable_answer_is_an_error_event(self, callbell_conn, async_answers):
        answers, seen = async_answers
        answers.append(httpx.Response(200, json={"message": {"uuid": UUID}}))
        (event,) = events(rebuilt(message_uuid=UUID))
        assert event["event"] == "error"
        assert event["status_code"] is None
        assert "expected a message with a status" in event["reason"]
        assert len(seen) == 1
