"""The poll loop both triggers share (``CallbellPollTrigger``): spread start and end, jittered polls."""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace
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
    spread = (0, min(poll_interval, START_SPREAD))
    assert drawn == [spread, spread, (1 - POLL_JITTER, 1 + POLL_JITTER)]  # last poll, first, next
    assert slept == [0, pytest.approx(poll_interval * (1 - POLL_JITTER))]


def test_the_base_says_nothing_about_how_to_poll() -> None:
    with pytest.raises(TypeError, match="abstract"):
        CallbellPollTrigger(end_time=0)  # type: ignore[abstract]


class _FirstSleep(Exception):
    """Stops a run at its first sleep, which is all these tests look at."""


@pytest.mark.parametrize("make", [status_trigger, reply_trigger], ids=["status", "reply"])
def test_triggers_started_together_spread_their_first_polls(
    make: Any, callbell_conn: None, async_answers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 triggers made at once (a triggerer's restart) do not poll in one burst: their first polls
    spread over at least half a second, and none waits longer than a poll interval or a second.

    It fails if the spread is removed, drawn from an empty range, or ``START_SPREAD`` shrinks.
    ``async_answers`` (with no answer queued) keeps a poll that would come first off the network.
    """
    first_sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        first_sleeps.append(seconds)
        raise _FirstSleep

    monkeypatch.setattr(triggers.asyncio, "sleep", sleep)

    async def start_all() -> None:
        for _ in range(200):
            trigger, _ = make(60.0)
            with pytest.raises(_FirstSleep):
                await anext(trigger.run())

    random.seed(19)  # the spread is random: a fixed draw keeps the test deterministic
    try:
        asyncio.run(start_all())
    finally:
        random.seed()
    assert len(first_sleeps) == 200
    assert max(first_sleeps) - min(first_sleeps) >= 0.5
    assert len({round(s, 2) for s in first_sleeps}) >= 50  # not a few bursts either
    assert max(first_sleeps) <= 1.0


class Clock:
    """A Unix clock that only ``asyncio.sleep`` moves: the tests below see every poll's time exactly."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def time(self) -> float:
        return self.now


class Recording(CallbellPollTrigger):
    """A trigger whose polls never settle, recording when each came and when its timeout event fired."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.polls: list[float] = []

    def serialize_kwargs(self) -> dict[str, Any]:
        return {}

    async def poll_once(self, hook: Any) -> dict[str, Any] | None:
        self.polls.append(self.clock.now)
        return None

    def timeout_event(self) -> dict[str, Any]:
        return {"event": "timeout", "at": self.clock.now}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        await real_sleep(0)

    monkeypatch.setattr(triggers, "time", SimpleNamespace(time=clock.time))
    monkeypatch.setattr(triggers.asyncio, "sleep", sleep)
    return clock


@pytest.mark.parametrize("poll_interval", [60.0, 0.4], ids=["spread-shorter", "interval-shorter"])
def test_triggers_sharing_a_deadline_spread_their_last_poll_before_it(
    clock: Clock, poll_interval: float
) -> None:
    """200 triggers with one deadline (one DAG run's sensors) do not all poll at ``end_time``: their
    last polls spread over the last ``min(poll_interval, START_SPREAD)`` seconds before it, none earlier
    (what arrives before then, they see), and every timeout event fires at ``end_time``, not sooner.

    It fails if the last poll is cut to ``end_time`` again (no spread), comes more than the spread
    before the deadline, or the timeout event fires at the last poll.
    """
    end_time = clock.now + 5
    spread = min(poll_interval, START_SPREAD)

    async def run_one() -> tuple[list[float], dict[str, Any]]:
        trigger = Recording(clock, end_time=end_time, poll_interval=poll_interval)
        (event,) = [event.payload async for event in trigger.run()]
        clock.now = end_time - 5  # the next trigger starts when this one did
        return trigger.polls, event

    random.seed(19)  # the spread is random: a fixed draw keeps the test deterministic
    try:
        runs = [asyncio.run(run_one()) for _ in range(200)]
    finally:
        random.seed()
    last_polls = [polls[-1] for polls, _ in runs]
    assert all(end_time - spread <= last <= end_time for last in last_polls)
    assert max(last_polls) - min(last_polls) >= spread / 2
    assert len({round(last, 3) for last in last_polls}) >= 50  # not a few bursts either
    assert all(event == {"event": "timeout", "at": end_time} for _, event in runs)
    assert all(len(polls) >= 2 for polls, _ in runs)  # the first poll, the last one (and those between)


def test_a_trigger_resumed_just_before_its_deadline_still_polls_once(clock: Clock) -> None:
    trigger = Recording(clock, end_time=clock.now + 0.01, poll_interval=60.0)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    assert asyncio.run(collect()) == [{"event": "timeout", "at": pytest.approx(trigger.end_time)}]
    assert len(trigger.polls) == 1
