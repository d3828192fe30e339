"""Triggers of one event loop share one ``httpx.AsyncClient`` per base URL and timeouts, never per token,
which runs a few requests at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import httpx
import pytest

from airflow_provider_callbell.exceptions import CallbellTimeoutError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.transport import aio
from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger
from tests.helpers import TOKEN, UUID, set_connection

OTHER_TOKEN = "other-account-token-0123456789"


class Made(list):  # type: ignore[type-arg]
    """The clients the transport made, and ``seen``: every request they sent."""

    seen: list[httpx.Request]


@pytest.fixture
def clients_made(monkeypatch) -> Made:
    """Every client the transport makes, answering each request from a handler that records it."""
    made = Made()
    seen: list[httpx.Request] = []
    made.seen = seen
    real_client = httpx.AsyncClient

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"message": {"uuid": UUID, "status": "enqueued", "messageStatusPayload": {}}}
        # A cookie set for one account's request must never travel with another account's.
        return httpx.Response(
            200,
            headers={"Content-Type": "application/json", "Set-Cookie": f"session=of-{len(seen)}; Path=/"},
            stream=httpx.ByteStream(json.dumps(body).encode()),
        )

    def recording(**kwargs: Any) -> httpx.AsyncClient:
        made.append(real_client(transport=httpx.MockTransport(handler), **kwargs))
        return made[-1]

    monkeypatch.setattr(httpx, "AsyncClient", recording)
    return made


def trigger(conn_id: str = "callbell_default") -> CallbellMessageStatusTrigger:
    return CallbellMessageStatusTrigger(
        message_uuid=UUID,
        end_time=time.time() + 30,
        target_statuses=("read",),
        poll_interval=0.01,
        callbell_conn_id=conn_id,
    )


async def run_until_polled(
    triggers: list[CallbellMessageStatusTrigger], polls: int, seen: list[httpx.Request]
) -> None:
    """Start the triggers, let them poll ``polls`` times in all, then cancel them as the triggerer does."""
    tasks = [asyncio.ensure_future(anext(t.run())) for t in triggers]
    give_up = time.monotonic() + 20
    while len(seen) < polls:
        assert not any(task.done() for task in tasks), [task.result() for task in tasks if task.done()]
        assert time.monotonic() < give_up, f"{len(seen)} polls"
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


def test_triggers_of_one_connection_share_one_client_closed_by_the_last(monkeypatch, clients_made):
    set_connection(monkeypatch)

    async def scenario() -> None:
        first, second = trigger(), trigger()
        task = asyncio.ensure_future(anext(first.run()))
        await run_until_polled([second], 4, clients_made.seen)  # type: ignore[attr-defined]
        assert len(clients_made) == 1
        assert not clients_made[0].is_closed  # the first trigger still uses it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(clients_made) == 1
    assert clients_made[0].is_closed  # cancelled, the last one closed it


def test_different_base_urls_do_not_share(monkeypatch, clients_made):
    set_connection(monkeypatch, "callbell_a", host="http://127.0.0.1:8001/v1")
    set_connection(monkeypatch, "callbell_b", host="http://127.0.0.1:8002/v1")
    seen = clients_made.seen
    asyncio.run(run_until_polled([trigger("callbell_a"), trigger("callbell_b")], 4, seen))
    assert len(clients_made) == 2
    assert all(client.is_closed for client in clients_made)
    assert {request.url.port for request in seen} == {8001, 8002}


def test_different_tokens_share_a_client_each_request_with_its_own_token_and_no_cookie(
    monkeypatch, clients_made
):
    set_connection(monkeypatch, "callbell_a")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLBELL_B", json.dumps({"conn_type": "callbell", "password": OTHER_TOKEN})
    )
    seen = clients_made.seen
    asyncio.run(run_until_polled([trigger("callbell_a"), trigger("callbell_b")], 6, seen))
    assert len(clients_made) == 1
    assert {request.headers["Authorization"] for request in seen} == {
        f"Bearer {TOKEN}",
        f"Bearer {OTHER_TOKEN}",
    }
    assert all("cookie" not in request.headers for request in seen)
    assert "Authorization" not in clients_made[0].headers


def test_another_event_loop_gets_its_own_client(monkeypatch, clients_made):
    set_connection(monkeypatch)
    hook = CallbellHook()

    async def poll() -> None:
        await hook.aget_message_status(UUID)

    asyncio.run(poll())
    asyncio.run(poll())  # the first loop has ended: its client is let go, this loop gets one
    assert len(clients_made) == 2
    asyncio.run(hook.aclose())  # on a third loop: the second's client is forgotten, not closed
    assert not aio._CLIENTS


def test_a_hook_closed_twice_releases_once(monkeypatch, clients_made):
    set_connection(monkeypatch)

    async def scenario() -> None:
        kept, closed = CallbellHook(), CallbellHook()
        await kept.aget_message_status(UUID)
        await closed.aget_message_status(UUID)
        await closed.aclose()
        await closed.aclose()
        assert not clients_made[0].is_closed  # still held by the other hook
        await kept.aget_message_status(UUID)
        await kept.aclose()
        assert clients_made[0].is_closed

    asyncio.run(scenario())
    assert len(clients_made) == 1


def test_the_shared_key_never_holds_the_token(monkeypatch, clients_made, caplog):
    set_connection(monkeypatch)
    caplog.set_level("DEBUG")

    async def scenario() -> str:
        hook = CallbellHook()
        await hook.aget_message_status(UUID)
        (clients,) = aio._CLIENTS.values()
        shown = repr(clients)
        await hook.aclose()
        return shown

    shown = asyncio.run(scenario())
    assert "ClientKey(base_url='https://api.callbell.eu/v1'" in shown
    assert TOKEN not in shown
    assert TOKEN not in caplog.text
    assert not aio._CLIENTS  # the last user gone, nothing is kept for the loop


@pytest.fixture
def held_answers(monkeypatch) -> tuple[asyncio.Event, list[str]]:
    """Every client answers only once ``release`` is set; ``running`` lists the requests being answered."""
    release = asyncio.Event()
    running: list[str] = []
    real_client = httpx.AsyncClient

    async def handler(request: httpx.Request) -> httpx.Response:
        running.append(request.url.path)
        try:
            await release.wait()
        finally:
            running.remove(request.url.path)
        body = {"message": {"uuid": UUID, "status": "enqueued", "messageStatusPayload": {}}}
        return httpx.Response(200, stream=httpx.ByteStream(json.dumps(body).encode()))

    monkeypatch.setattr(
        httpx, "AsyncClient", lambda **kwargs: real_client(transport=httpx.MockTransport(handler), **kwargs)
    )
    return release, running


async def _settle(running: list[str], count: int) -> None:
    """Wait until ``count`` requests reach the server, then a little more: none else may follow."""
    give_up = time.monotonic() + 10
    while len(running) < count:
        assert time.monotonic() < give_up, running
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)


def test_a_shared_client_runs_at_most_its_slots_at_once(monkeypatch, held_answers):
    """500 triggers starting together do not open 500 connections: the 9th request waits for a slot.

    It fails if the slots are removed (all 20 reach the server at once)."""
    set_connection(monkeypatch)
    release, running = held_answers

    async def scenario() -> None:
        hooks = [CallbellHook() for _ in range(20)]
        polls = [asyncio.ensure_future(hook.aget_message_status(UUID)) for hook in hooks]
        await _settle(running, aio.SLOTS)
        assert len(running) == aio.SLOTS
        release.set()
        assert all(message["status"] == "enqueued" for message in await asyncio.gather(*polls))
        for hook in hooks:
            await hook.aclose()

    asyncio.run(scenario())


def test_a_slow_answer_gives_its_slot_up(monkeypatch, held_answers):
    """Requests Callbell is slow to answer hold their slots for ``SLOT_SECONDS`` at most: the next ones
    go out meanwhile. It fails if a slot is held until its answer comes."""
    set_connection(monkeypatch)
    monkeypatch.setattr(aio, "SLOT_SECONDS", 0.05)
    release, running = held_answers

    async def scenario() -> None:
        hook = CallbellHook()
        polls = [asyncio.ensure_future(hook.aget_message_status(UUID)) for _ in range(aio.SLOTS + 3)]
        await _settle(running, aio.SLOTS + 3)  # the slow ones still wait for their answer
        assert len(running) == aio.SLOTS + 3
        release.set()
        await asyncio.gather(*polls)
        await hook.aclose()

    asyncio.run(scenario())


def test_the_wait_for_a_slot_counts_in_the_deadline(monkeypatch, clients_made):
    """A poll that cannot get a slot in time ends as out of time (transient: the trigger polls again),
    not waiting for ever behind the others. It fails if the wait is outside the attempt's deadline."""
    set_connection(monkeypatch)

    async def scenario() -> None:
        hook = CallbellHook(timeout=(0.1, 0.2))
        shared = await hook._aclient(await hook._asettings())
        for _ in range(aio.SLOTS):  # every slot taken, by requests that never end
            await shared.slots.acquire()
        with pytest.raises(CallbellTimeoutError) as raised:
            await asyncio.wait_for(hook.aget_message_status(UUID), timeout=10)
        assert raised.value.is_transient
        assert "within 0.3 s" in str(raised.value)
        assert not clients_made.seen  # it never went out
        await hook.aclose()

    asyncio.run(scenario())


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps cancellations since 3.12")
def test_a_cancellation_that_comes_as_a_poll_ends_is_not_lost(monkeypatch, clients_made):
    """Python 3.11's ``asyncio.wait_for`` returns the result, and drops a cancellation that comes in the
    same step; the triggerer's cancel must still end the run (and let go of the client). It fails if
    :func:`aio._raise_if_cancelled` is removed: the run polls on."""
    set_connection(monkeypatch)

    async def wait_for_of_python_3_11(awaitable: Any, timeout: float) -> Any:
        result = await awaitable
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the triggerer's cancel, arriving as the answer does ...
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # ... and swallowed, as wait_for does when its inner future is done
        return result

    monkeypatch.setattr(aio.asyncio, "wait_for", wait_for_of_python_3_11)

    async def scenario() -> None:
        task = asyncio.ensure_future(anext(trigger().run()))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(clients_made.seen) == 1  # one poll, then the run ended
    assert clients_made[0].is_closed
