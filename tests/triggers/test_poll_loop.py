"""The poll loop both triggers share (``CallbellPollTrigger``): spread start, jittered polls."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest

from airflow_provider_callbell.triggers import callbell as triggers
from airflow_provider_callbell.triggers.callbell import (
    POLL_JITTER,
    START_SPREAD,
    CallbellMessageStatusTrigger,
    CallbellPollTrigger,
    CallbellReplyTrigger,
)
from tests.helpers import UUID

PHONE = "+31612345678"
QUESTION = {"text": "Publish?", "uuid": UUID, "status": "sent", "createdAt": "2026-11-30T08:00:00Z"}
ANSWER = {"text": "yes", "status": "received", "createdAt": "2026-11-30T08:00:01Z", "from": "316"}


def status(value: str) -> httpx.Response:
    return httpx.Response(200, json={"message": {"uuid": UUID, "status": value, "messageStatusPayload": {}}})


def status_trigger(poll_interval: float) -> tuple[CallbellPollTrigger, list[httpx.Response]]:
    trigger = CallbellMessageStatusTrigger(
        message_uuid=UUID, end_time=time.time() + 5, poll_interval=poll_interval
    )
    return trigger, [status("enqueued"), status("delivered")]


def reply_trigger(poll_interval: float) -> tuple[CallbellPollTrigger, list[httpx.Response]]:
    trigger = CallbellReplyTrigger(
        to=PHONE, end_time=time.time() + 5, after_message_uuid=UUID, poll_interval=poll_interval
    )
    return trigger, [
        httpx.Response(200, json={"contact": {"uuid": "c" * 32}}),
        httpx.Response(200, json={"messages": [QUESTION]}),
        httpx.Response(200, json={"messages": [ANSWER, QUESTION]}),
    ]


@pytest.mark.parametrize("make", [status_trigger, reply_trigger], ids=["status", "reply"])
@pytest.mark.parametrize("poll_interval", [0.05, 2.0], ids=["interval-shorter", "spread-shorter"])
def test_both_triggers_spread_their_first_poll_and_jitter_the_next(
    make: Any, poll_interval: float, callbell_conn: None, async_answers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers, _ = async_answers
    trigger, replies = make(poll_interval)
    answers.extend(replies)
    drawn: list[tuple[float, float]] = []
    slept: list[float] = []
    real_sleep = asyncio.sleep

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(random, "uniform", uniform)
    monkeypatch.setattr(triggers.asyncio, "sleep", sleep)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(collect())
    assert event["event"] in ("status", "reply")
    assert drawn == [(0, min(poll_interval, START_SPREAD)), (1 - POLL_JITTER, 1 + POLL_JITTER)]
    assert slept == [0, pytest.approx(poll_interval * (1 - POLL_JITTER))]


def test_the_base_says_nothing_about_how_to_poll() -> None:
    with pytest.raises(TypeError, match="abstract"):
        CallbellPollTrigger(end_time=0)  # type: ignore[abstract]
