"""CallbellReplyTrigger, rebuilt from its own ``serialize()`` output and run with asyncio."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any
from unittest import mock

import httpx
import pytest

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.replies import ReplyScan
from airflow_provider_callbell.triggers.callbell import CallbellReplyTrigger
from tests.compat import import_string
from tests.helpers import TOKEN, UUID

PHONE = "+31612345678"
CONTACT_UUID = "414a6d692bd645ed803f2e7ce360d4c8"


def rebuilt(**kwargs: Any) -> CallbellReplyTrigger:
    """A trigger as the triggerer gets it: made from the serialized form, after a JSON round trip."""
    kwargs.setdefault("to", PHONE)
    kwargs.setdefault("end_time", time.time() + 5)
    kwargs.setdefault("poll_interval", 0.05)
    classpath, serialized = CallbellReplyTrigger(**kwargs).serialize()
    return import_string(classpath)(**json.loads(json.dumps(serialized)))


def events(trigger: CallbellReplyTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


class TestSerialize:
    def test_round_trip(self) -> None:
        kwargs = {
            "to": PHONE,
            "end_time": 1_800_000_000.5,
            "after_message_uuid": UUID,
            "since": None,
            "contact_uuid": CONTACT_UUID,
            "channel_uuid": "c1",
            "choices": ["Yes", "No"],
            "pattern": None,
            "reprompt": "Reply YES or NO",
            "reprompted": 2,
            "poll_interval": 15.0,
            "callbell_conn_id": "callbell_ops",
            "connected": True,
        }
        classpath, serialized = CallbellReplyTrigger(**kwargs).serialize()
        assert classpath == "airflow_provider_callbell.triggers.callbell.CallbellReplyTrigger"
        assert serialized == kwargs
        again = import_string(classpath)(**json.loads(json.dumps(serialized)))
        assert again.serialize() == (classpath, kwargs)

    def test_holds_no_token(self, callbell_conn: None) -> None:
        trigger = CallbellReplyTrigger(to=PHONE, end_time=0, pattern="(?i)ack")
        assert TOKEN not in json.dumps(trigger.serialize())

    def test_rule_is_checked(self) -> None:
        with pytest.raises(CallbellValidationError, match="not both"):
            CallbellReplyTrigger(to=PHONE, end_time=0, choices=["yes"], pattern="yes")


class TestAgainstSandbox:
    def test_reply_arriving_while_polling(self, callbell_sandbox: Any) -> None:
        question = CallbellHook().send_message(PHONE, content={"text": "Publish?"})["uuid"]
        timer = threading.Timer(0.3, callbell_sandbox.receive, (PHONE, "YES"))
        timer.start()
        try:
            found = events(rebuilt(after_message_uuid=question, choices=["yes", "no"]))
        finally:
            timer.cancel()
        assert [e["event"] for e in found] == ["reply"]
        assert {k: found[0]["reply"][k] for k in ("text", "choice", "from")} == {
            "text": "YES",
            "choice": "yes",
            "from": "31612345678",
        }

    def test_one_request_per_poll_while_nothing_new(self, callbell_sandbox: Any) -> None:
        callbell_sandbox.messages_page_size = 2
        for n in range(6):
            callbell_sandbox.receive(PHONE, f"old {n}")
        question = CallbellHook().send_message(PHONE, content={"text": "Publish?"})["uuid"]
        before = len(callbell_sandbox.requests)
        with mock.patch.object(ReplyScan, "result", autospec=True, side_effect=ReplyScan.result) as check:
            found = events(
                rebuilt(after_message_uuid=question, end_time=time.time() + 0.6, poll_interval=0.1)
            )
        assert found == [{"event": "timeout"}]
        polls = check.call_count
        paths = [r["path"] for r in callbell_sandbox.requests[before:]]
        contact_uuid = callbell_sandbox.contacts[0]["uuid"]
        assert paths[0] == "/v1/contacts/phone/%2B31612345678"  # once, on the first poll
        assert paths[1:] == [f"/v1/contacts/{contact_uuid}/messages"] * polls  # then one page per poll
        assert polls >= 2

    def test_wrong_answer_hands_back_for_a_reprompt(self, callbell_sandbox: Any) -> None:
        question = CallbellHook().send_message(PHONE, content={"text": "Publish?"})["uuid"]
        callbell_sandbox.receive(PHONE, "maybe")
        end_time = time.time() + 5
        found = events(
            rebuilt(
                after_message_uuid=question, choices=["yes", "no"], reprompt="YES or NO?", end_time=end_time
            )
        )
        assert found == [
            {
                "event": "reprompt",
                "contact_uuid": callbell_sandbox.contacts[0]["uuid"],
                "since": None,
                "end_time": end_time,
                "wrong": 1,
                "reprompted": 0,
            }
        ]
        assert len(callbell_sandbox.messages) == 1  # the trigger itself sends nothing

    def test_no_contact_yet_then_an_answer(self, callbell_sandbox: Any) -> None:
        timer = threading.Timer(0.3, callbell_sandbox.receive, (PHONE, "ACK"))
        timer.start()
        try:
            found = events(rebuilt(pattern="(?i)ack", since=time.time() - 1))
        finally:
            timer.cancel()
        assert found[0]["reply"]["text"] == "ACK"

    def test_refused_token_ends_with_an_error(
        self, callbell_sandbox: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            json.dumps({"conn_type": "callbell", "host": callbell_sandbox.url, "password": "wrong"}),
        )
        (event,) = events(rebuilt(after_message_uuid=UUID))
        assert (event["event"], event["status_code"], event["endpoint"]) == (
            "error",
            401,
            f"GET /contacts/phone/{PHONE.replace('+', '%2B')}",
        )
        assert "wrong" not in json.dumps(event)


class TestTransientErrors:
    def test_retried_until_an_answer(self, callbell_conn: None, async_answers: Any) -> None:
        answers, seen = async_answers
        listed = [
            {"text": "no", "status": "received", "createdAt": "2026-11-30T08:00:01Z", "from": "316"},
            {"text": "Publish?", "uuid": UUID, "status": "sent", "createdAt": "2026-11-30T08:00:00Z"},
        ]
        answers.extend(
            [
                httpx.Response(503, text="busy"),
                httpx.ConnectError("refused"),
                httpx.Response(200, json={"contact": {"uuid": CONTACT_UUID}}),
                httpx.Response(429, text="slow down"),
                httpx.Response(200, json={"messages": listed}),
            ]
        )
        (event,) = events(rebuilt(after_message_uuid=UUID, choices=["yes", "no"]))
        assert event["reply"]["choice"] == "no"
        assert len(seen) == 5


def big_page(n: int) -> httpx.Response:
    """A page just under the 1 MiB body cap: 190 answers of 5,000 characters, none of them the question."""
    messages = [
        {"text": f"{n}.{i} " + "m" * 5000, "status": "received", "createdAt": "2026-11-30T08:00:00Z"}
        for i in range(190)
    ]
    return httpx.Response(200, json={"messages": messages, "meta": {"pages": 50}})


class TestFailClosed:
    def test_a_poll_of_ten_large_pages_holds_a_few_mib(self, callbell_conn: None, async_answers: Any) -> None:
        import tracemalloc

        answers, seen = async_answers
        answers.extend(big_page(n) for n in range(10))
        trigger = CallbellReplyTrigger(
            to=PHONE, end_time=time.time() + 5, after_message_uuid=UUID, contact_uuid=CONTACT_UUID
        )

        async def one_poll() -> Any:
            hook = CallbellHook()
            try:
                await hook._asettings()  # the connection is read once per run, not per poll
                tracemalloc.start()
                check = await trigger._check(hook)
                _, peak = tracemalloc.get_traced_memory()
                return check, peak
            finally:
                tracemalloc.stop()
                await hook.aclose()

        check, peak = asyncio.run(one_poll())
        assert len(seen) == 10  # ten pages read, as deep as a poll looks for the question
        assert not check.reference_found
        assert peak < 6 * 2**20  # 3.9 MiB measured; holding the pages: 11.6 MiB, f"{peak / 2**20:.1f} MiB"

    def test_a_field_of_the_wrong_type_is_a_typed_error_event(
        self, callbell_conn: None, async_answers: Any
    ) -> None:
        answers, _ = async_answers
        listed = [{"text": ["yes"], "status": "received", "createdAt": "2026-11-30T08:00:01Z"}]
        answers.append(httpx.Response(200, json={"messages": [*listed, {"uuid": UUID, "status": "sent"}]}))
        found = events(rebuilt(after_message_uuid=UUID, contact_uuid=CONTACT_UUID, choices=["yes"]))
        assert [(e["event"], e["error_class"]) for e in found] == [("error", "CallbellInvalidResponseError")]
        assert "'text' of type list" in found[0]["reason"]
