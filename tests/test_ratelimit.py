"""The rate gate on a fake clock (spacing, the pause, a reservation overtaken by a pause), and the
account's window shared by every process through a ``limits`` storage: in memory, and in a real
redis-server with hooks in two processes sending to the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_callbell import ratelimit
from airflow_provider_callbell.exceptions import (
    CallbellConnectionConfigError,
    CallbellError,
    CallbellRateLimitError,
    CallbellValidationError,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.ratelimit import (
    ACCOUNT_RPS,
    RateGate,
    SharedRateGate,
    SharedStorage,
    account_id,
    shared_storage,
)
from airflow_provider_callbell.retry import RETRY_AFTER_MAX
from airflow_provider_callbell.transport.caps import redact_url
from tests.helpers import BASE_URL, SEND_URL, TOKEN, UUID, Waits, set_connection
from tests.redis_server import MISSING, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def waits():
    return Waits()


def gate(waits: Waits) -> RateGate:
    return RateGate(clock=waits.clock, sleep=waits.sleep)


class TestRateGate:
    def test_no_spacing_outside_a_bulk_send(self, waits):
        g = gate(waits)
        for _ in range(3):
            g.acquire()
        assert waits == []
        assert g.max_rps is None

    def test_spaces_starts_one_interval_apart(self, waits):
        g = gate(waits)
        starts = []
        with g.limited(4):
            assert g.max_rps == 4
            for _ in range(3):
                g.acquire()
                starts.append(waits.now)
        assert starts == [1000.0, 1000.25, 1000.5]
        assert g.max_rps is None

    def test_a_request_late_for_its_slot_is_not_made_up_for_by_a_burst(self, waits):
        g = gate(waits)
        with g.limited(10):
            g.acquire()
            waits.now += 5  # nothing sent for a while
            g.acquire()
            g.acquire()
        assert waits == [pytest.approx(0.1)]

    def test_pause_holds_the_next_request(self, waits):
        g = gate(waits)
        g.pause(2)
        g.acquire()
        assert waits == [2.0]

    def test_overlapping_pauses_end_with_the_latest(self, waits):
        g = gate(waits)
        g.pause(5)
        g.pause(2)
        g.acquire()
        assert waits == [5.0]

    def test_a_pause_during_the_wait_for_a_slot_queues_the_request_behind_it(self, waits):
        g = gate(waits)

        def sleep_while_another_worker_gets_a_429(seconds: float) -> None:
            Waits.sleep(waits, seconds)
            if len(waits) == 1:
                g.pause(3)  # Retry-After: 3, met by another worker while this one waited

        g._sleep = sleep_while_another_worker_gets_a_429
        with g.limited(1):
            g.acquire()  # starts at once
            g.acquire()  # reserves +1 s, during which the pause begins
        assert waits == [1.0, 3.0]
        assert waits.now == 1004.0  # the pause's end, not the reserved slot inside it

    def test_a_request_woken_late_takes_a_new_start_instead_of_going_out_bunched(self, waits):
        # The process stalled while the request slept (a busy machine, a garbage collection): going
        # out 50 ms late, it would arrive bunched with the requests spaced after it.
        g = gate(waits)

        def stalled_sleep(seconds: float) -> None:
            Waits.sleep(waits, seconds + (0.05 if len(waits) < 2 else 0))  # two waits overslept by 50 ms

        g._sleep = stalled_sleep
        with g.limited(10):
            g.acquire()  # starts at once, no wait
            g.acquire()  # reserves +0.1 s, wakes at +0.15, takes the next start (+0.2): once only
            assert waits == [pytest.approx(0.15), pytest.approx(0.1)]
            assert waits.now == pytest.approx(1000.25)  # late for its second start too: it goes then
            g.acquire()
        assert waits[2:] == [pytest.approx(0.05)]  # the next start, +0.3 s: the spacing goes on

    def test_a_request_woken_a_little_late_goes_out(self, waits):
        g = gate(waits)
        g._sleep = lambda seconds: Waits.sleep(waits, seconds + ratelimit.LATE_SECONDS / 2)
        with g.limited(10):
            g.acquire()
            g.acquire()
        assert waits == [pytest.approx(0.1 + ratelimit.LATE_SECONDS / 2)]  # one wait: it went

    @pytest.mark.parametrize(
        "max_rps",
        [
            pytest.param(0, id="zero"),
            pytest.param(-5, id="negative"),
            pytest.param("10", id="string"),
            pytest.param(True, id="bool"),
            pytest.param(float("inf"), id="infinite"),
            pytest.param(float("nan"), id="nan"),
            pytest.param(1e-300, id="tiny"),
            pytest.param(0.09, id="below-0.1"),
            pytest.param(10_001, id="above-10000"),
            pytest.param(10**400, id="huge-int"),
        ],
    )
    def test_max_rps_must_be_finite_and_sensible(self, waits, max_rps):
        with (
            pytest.raises(
                CallbellValidationError, match=r"max_rps must be a number of requests per second from 0\.1"
            ),
            gate(waits).limited(max_rps),
        ):
            pass

    def test_one_bulk_send_at_a_time(self, waits):
        g = gate(waits)
        with g.limited(10), pytest.raises(CallbellError, match="already running"), g.limited(10):
            pass
        with g.limited(20):  # released after the first
            assert g.max_rps == 20


# -- The account's window, shared through a limits storage ---------------------------------------


class _Log:
    """Records what a gate reports, as the hook's logger would receive it."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str, *args: object) -> None:
        self.lines.append(("debug", msg % args))

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(("info", msg % args))

    def warning(self, msg: str, *args: object) -> None:
        self.lines.append(("warning", msg % args))

    def at(self, level: str) -> list[str]:
        return [line for lvl, line in self.lines if lvl == level]


def shared_gate(storage: SharedStorage, account: str = "acct", log: _Log | None = None) -> SharedRateGate:
    return SharedRateGate(storage, account, log=log or _Log())


SPACING = 1.0 / ACCOUNT_RPS


def fill(storage: SharedStorage, account: str = "acct") -> None:
    """Take the account's places for the next second, as other processes sending at full speed would."""
    for _ in range(ACCOUNT_RPS):
        storage.take_place(account)


def schedule_calls(client) -> int:  # type: ignore[no-untyped-def]
    """How many times the account schedule's script ran in redis (its places taken and pauses)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


class TestAccountId:
    def test_a_hash_of_the_base_url_and_the_token_never_the_token(self):
        name = account_id(BASE_URL, TOKEN)
        assert TOKEN not in name
        assert len(name) == 32
        assert name == account_id(BASE_URL, TOKEN)
        assert name != account_id("http://127.0.0.1:8787/v1", TOKEN)  # the sandbox is another account
        assert name != account_id(BASE_URL, TOKEN + "x")


class TestSharedStorage:
    """The schedule and the pause in the memory storage (one process's view of a shared one)."""

    def test_places_are_evenly_spaced_at_the_account_rate(self):
        storage = SharedStorage("memory://")
        waits = [storage.take_place("acct") for _ in range(ACCOUNT_RPS + 1)]
        assert waits[0] == 0.0
        # Each place comes one ACCOUNT_RPS-th of a second after the one before it (less the
        # microseconds between two calls), never two at once: one second holds ACCOUNT_RPS of them.
        gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
        assert all(SPACING - 0.001 < gap <= SPACING for gap in gaps)
        assert 0.98 < waits[-1] <= 1.0
        assert storage.take_place("another account") == 0.0

    def test_an_idle_account_starts_again_from_now(self):
        storage = SharedStorage("memory://")
        storage.take_place("acct")
        time.sleep(2 * SPACING)
        assert storage.take_place("acct") == 0.0  # an unused place is not saved up for a burst

    def test_a_pause_holds_the_account_in_every_gate_then_lifts(self):
        storage = SharedStorage("memory://")
        storage.pause("acct", 1)
        assert 0.95 < storage.take_place("acct") <= 1.0
        assert storage.take_place("another account") == 0.0

    def test_a_pause_never_shortens_a_longer_one(self):
        storage = SharedStorage("memory://")
        storage.pause("acct", 3)
        storage.pause("acct", 1)
        assert storage.take_place("acct") > 2.9

    def test_one_storage_per_uri_per_process(self, monkeypatch):
        monkeypatch.setattr(ratelimit, "_storages", {})
        assert shared_storage("memory://") is shared_storage("memory://")

    def test_hooks_of_one_connection_share_it(self, monkeypatch):
        monkeypatch.setattr(ratelimit, "_storages", {})
        set_connection(monkeypatch, extra={"rate_limit_storage": "memory://"})
        first, second = CallbellHook()._gate, CallbellHook()._gate
        assert isinstance(first, SharedRateGate)
        assert first.storage is second.storage
        assert first._account == second._account == account_id(BASE_URL, TOKEN)

    def test_without_the_extra_a_hook_keeps_its_own_gate(self, callbell_conn):
        assert type(CallbellHook()._gate) is RateGate


class TestSharedRateGate:
    def test_two_hooks_share_one_schedule(self):
        storage = SharedStorage("memory://")
        first, second = shared_gate(storage), shared_gate(storage)
        first._sleep = lambda seconds: None  # it takes its places and goes: the other hook is tested
        for _ in range(ACCOUNT_RPS):
            first.acquire()
        slept: list[float] = []
        second._sleep = slept.append
        second.acquire()
        assert len(slept) == 1
        assert 0.95 < slept[0] <= 1.0  # behind every place the first hook took

    def test_a_place_that_a_429_of_this_process_overtook_is_given_up(self):
        # A thread waits for its place; meanwhile another thread of the process meets a 429. The
        # place now falls inside the pause: the thread waits the pause out and takes a new place
        # after it, instead of going out into the pause and being refused in turn.
        waits = Waits()
        gate = SharedRateGate(
            SharedStorage("memory://"), "acct", log=_Log(), clock=waits.clock, sleep=waits.sleep
        )
        fill(gate.storage)  # its place is a second away
        real_sleep = waits.sleep

        def sleep_while_another_thread_meets_a_429(seconds: float) -> None:
            real_sleep(seconds)
            if len(waits) == 1:
                gate.pause(2)

        gate._sleep = sleep_while_another_thread_meets_a_429
        gate.acquire()
        assert waits[0] == pytest.approx(1.0, abs=0.01)  # its first place, overtaken by the pause
        assert waits[1] == pytest.approx(2.0)  # the rest of the pause, on the process's own gate
        assert waits[2] == pytest.approx(2.0, abs=0.01)  # a new place, after the shared pause
        assert len(waits) == 3

    def test_a_place_reached_late_is_given_up_for_a_new_one_once(self):
        # This process stalled while the thread waited for its place: going out now, it would arrive
        # bunched with the places other processes took after it. It takes the account's next place.
        waits = Waits()
        gate = SharedRateGate(
            SharedStorage("memory://"), "acct", log=_Log(), clock=waits.clock, sleep=waits.sleep
        )
        fill(gate.storage)  # its place is a second away
        gate._sleep = lambda seconds: Waits.sleep(waits, seconds + (0.05 if len(waits) < 2 else 0))
        gate.acquire()
        assert len(waits) == 2  # a second place, and no third: late for it too, it goes
        assert waits[0] == pytest.approx(1.05, abs=0.01)  # its first place, reached 50 ms late
        # Real time stood still (the storage's clock): the new place is the one after the first.
        assert waits[1] == pytest.approx(1.0 + SPACING + 0.05, abs=0.01)

    def test_a_place_reached_on_time_is_kept(self):
        waits = Waits()
        gate = SharedRateGate(
            SharedStorage("memory://"), "acct", log=_Log(), clock=waits.clock, sleep=waits.sleep
        )
        fill(gate.storage)
        gate.acquire()
        assert waits == [pytest.approx(1.0, abs=0.01)]

    def test_a_429_met_by_one_hook_pauses_the_other(self):
        storage = SharedStorage("memory://")
        first, second = shared_gate(storage), shared_gate(storage)
        first._sleep = lambda seconds: None  # its own wait is not what is tested
        first.pause(1)
        start = time.monotonic()
        second.acquire()
        assert 0.7 < time.monotonic() - start < 1.5

    def test_a_bulk_send_keeps_its_spacing_on_top_of_the_window(self):
        waits = Waits()
        gate = SharedRateGate(
            SharedStorage("memory://"), "acct", log=_Log(), clock=waits.clock, sleep=waits.sleep
        )
        with gate.limited(4):
            for _ in range(3):
                gate.acquire()
        # The bulk send's own spacing (on the fake clock: starts 0.25 s apart), each followed by the
        # wait for the account's next place (real time stood still: one place after the other).
        assert [waits[0], waits[1] + waits[2]] == [0.25, pytest.approx(0.25)]
        assert waits[1::2] == [pytest.approx(SPACING, abs=0.001), pytest.approx(2 * SPACING, abs=0.001)]

    def test_a_poll_waiting_for_its_place_does_not_block_the_event_loop(self):
        storage = SharedStorage("memory://")
        fill(storage)
        gate = shared_gate(storage)

        async def run() -> tuple[float, float]:
            gaps: list[float] = []

            async def ticker() -> None:
                last = time.monotonic()
                while True:
                    await asyncio.sleep(0.01)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now

            ticking = asyncio.ensure_future(ticker())
            start = time.monotonic()
            await gate.aacquire()
            waited = time.monotonic() - start
            ticking.cancel()
            return waited, max(gaps)

        waited, longest_gap = asyncio.run(run())
        assert waited > 0.5  # it did wait for the window
        assert longest_gap < 0.25  # while the loop kept running


class TestStorageConfiguration:
    @pytest.mark.parametrize(
        ("uri", "match"),
        [
            pytest.param("nosuch://:Redis-Secr3t@host/0", "is not usable", id="unknown-scheme"),
            pytest.param("async+memory://", "cannot keep a shared schedule", id="async-storage"),
            pytest.param("memcached://localhost:11211", "is not usable|cannot keep", id="memcached"),
        ],
    )
    def test_a_storage_limits_cannot_use_is_a_config_error_without_its_password(self, uri, match):
        with pytest.raises(CallbellConnectionConfigError, match=match) as excinfo:
            SharedStorage(uri)
        assert str(excinfo.value).startswith("extra 'rate_limit_storage' ")
        assert "Redis-Secr3t" not in str(excinfo.value)

    def test_without_limits_installed_it_says_which_extra_to_install(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "limits", None)
        with pytest.raises(CallbellConnectionConfigError, match=r"install the provider's \[redis\] extra"):
            SharedStorage("redis://redis:6379/1")

    def test_the_hook_fails_before_any_request(self, monkeypatch, requests_mock):
        monkeypatch.setattr(ratelimit, "_storages", {})
        set_connection(monkeypatch, extra={"rate_limit_storage": "nosuch://redis:6379/1"})
        with pytest.raises(CallbellConnectionConfigError, match="rate_limit_storage"):
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert requests_mock.call_count == 0

    def test_a_redis_password_is_never_logged(self):
        assert redact_url("redis://:Redis-Secr3t@redis:6379/1") == "redis://***@redis:6379/1"
        assert redact_url("redis://user:Redis-Secr3t@redis/1") == "redis://***@redis/1"
        assert redact_url("redis://redis:6379/1") == "redis://redis:6379/1"

    def test_a_password_in_the_query_is_redacted_too(self):
        # redis-py reads ?password= (and limits passes the URI to it as it stands).
        uri = "redis://redis:6379/1?password=Redis-Secr3t&socket_keepalive=true"
        assert redact_url(uri) == "redis://redis:6379/1?password=***&socket_keepalive=true"
        assert (
            redact_url("rediss://r:6380/0?sentinel_password=Redis-Secr3t")
            == "rediss://r:6380/0?sentinel_password=***"
        )
        assert "Redis-Secr3t" not in ratelimit.redact_uri_in(f"cannot use {uri}", uri)

    @pytest.mark.parametrize(
        "uri",
        ["redis://:Redis%40Secr3t@redis:6379/1", "redis://redis:6379/1?password=Redis%40Secr3t"],
        ids=["userinfo", "query"],
    )
    def test_a_quoted_password_is_hidden_in_both_spellings(self, uri):
        # A library's error may quote the URI as given, or the password as it decoded it.
        text = f"cannot connect to {uri} with password Redis@Secr3t (Redis%40Secr3t)"
        redacted = ratelimit.redact_uri_in(text, uri)
        assert "Secr3t" not in redacted
        assert "redis:6379/1" in redacted

    @pytest.mark.parametrize(
        ("uri", "merged"),
        [
            ("redis://redis:6379/1", "redis://:p%40ss%2Fw%3Ard@redis:6379/1"),
            ("redis://user@redis:6379/1", "redis://user:p%40ss%2Fw%3Ard@redis:6379/1"),
        ],
    )
    def test_the_password_extra_is_merged_quoted(self, uri, merged):
        assert ratelimit.with_password(uri, "p@ss/w:rd") == merged
        assert ratelimit.with_password(uri, None) == uri

    def test_the_password_extra_is_never_in_an_error(self):
        with pytest.raises(CallbellConnectionConfigError, match="is not usable") as excinfo:
            SharedStorage("nosuch://host/0", "Redis@Secr3t")
        assert "nosuch://host/0" in str(excinfo.value)
        assert "Secr3t" not in str(excinfo.value)

    def test_the_outage_warning_hides_a_query_password(self, monkeypatch):
        log = _Log()
        port = free_port()  # nothing listens there
        storage = SharedStorage(f"redis://127.0.0.1:{port}/0?password=Redis-Secr3t")
        assert storage.call(lambda: storage.take_place("acct"), log) is None
        assert len(log.at("warning")) == 1
        assert f"redis://127.0.0.1:{port}/0?password=***" in log.at("warning")[0]
        assert "Redis-Secr3t" not in repr(log.lines)


def test_the_gate_does_not_import_the_bulk_send():
    """The rate belongs to the gate: bulk.py imports it from here (and still offers its old names)."""
    tree = ast.parse((ROOT / "airflow_provider_callbell" / "ratelimit.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "airflow_provider_callbell.bulk" not in imported
    from airflow_provider_callbell import bulk

    assert (bulk.DEFAULT_MAX_RPS, bulk.Log) == (ratelimit.DEFAULT_MAX_RPS, ratelimit.Log)


class TestRedis:
    """The schedule and the pause in a real redis-server, as every worker and the triggerer share it."""

    def test_processes_take_places_from_one_schedule_in_redis(self, redis_url, redis_server):
        # Two storages stand for two processes: their places interleave, evenly spaced.
        first, second = SharedStorage(redis_url), SharedStorage(redis_url)
        first.take_place("warm-up"), second.take_place("warm-up")  # both connected
        places = []  # (earliest, latest) time of each place: the call's start and end, plus its wait
        for _ in range(10):
            for storage in (first, second):
                before = time.monotonic()
                wait = storage.take_place("acct")
                places.append((before + wait, time.monotonic() + wait))
        # The k-th place comes k ACCOUNT_RPS-ths of a second after the first, whichever process took it.
        for k, (earliest, latest) in enumerate(places):
            assert earliest - 0.001 <= places[0][1] + k * SPACING
            assert latest + 0.001 >= places[0][0] + k * SPACING
        first.pause("acct", 2)
        assert 1.95 < second.take_place("acct") <= 2.0
        assert 2000 <= redis_server.client().pttl("callbell:schedule:acct") <= 3100  # then it expires

    @pytest.mark.parametrize(
        "stored",
        [b"junk", b"nan", b"-1", b"1e400", str(10**17).encode()],
        ids=["not-a-number", "nan", "the-past", "overflow", "the-far-future"],
    )
    def test_a_schedule_that_cannot_be_right_counts_as_none(self, redis_url, redis_server, stored):
        # Something else wrote the key, or a clock far off did: the account is not held until then.
        redis_server.client().set("callbell:schedule:acct", stored)
        storage = SharedStorage(redis_url)
        assert storage.take_place("acct") == 0.0
        assert 0 < storage.take_place("acct") <= SPACING  # and the schedule goes on from now

    def test_a_long_pause_is_within_the_horizon(self, redis_url, redis_server):
        storage = SharedStorage(redis_url)
        storage.pause("acct", RETRY_AFTER_MAX)  # the longest Retry-After honoured
        assert RETRY_AFTER_MAX - 1 < storage.take_place("acct") <= RETRY_AFTER_MAX

    def test_every_request_of_a_hook_takes_its_place_and_the_token_is_stored_nowhere(
        self, monkeypatch, callbell_sandbox, redis_url, redis_server
    ):
        connection = {
            **json.loads(callbell_sandbox.connection_json),
            "extra": {"rate_limit_storage": redis_url},
        }
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps(connection))
        hook = CallbellHook()
        client = redis_server.client()
        before = schedule_calls(client)
        sent = hook.send_messages([{"to": "+31612345678", "content": {"text": "hi"}}] * 3)
        hook.get_message_status(sent[0]["uuid"])
        assert schedule_calls(client) - before == 4  # 3 sends and a status read: each took its place
        hook._gate.pause(2)  # what the retry policy does on a 429
        held = redis_server.dump()
        account = account_id(callbell_sandbox.url, callbell_sandbox.token).encode()
        assert set(held) == {b"callbell:schedule:" + account}
        everything = b" ".join([*held, *(repr(value).encode() for value in held.values())])
        assert callbell_sandbox.token.encode() not in everything

    def test_a_poll_in_the_triggerer_takes_its_place_and_its_429_pauses_every_process(
        self, monkeypatch, async_answers, redis_url, redis_server
    ):
        import httpx

        set_connection(monkeypatch, extra={"rate_limit_storage": redis_url})
        answers, _ = async_answers
        answers += [
            httpx.Response(200, json={"message": {"uuid": UUID, "status": "sent"}}),
            httpx.Response(429, headers={"Retry-After": "3"}),
        ]
        hook = CallbellHook()

        async def poll_twice() -> None:
            await hook.aget_message_status(UUID)
            with pytest.raises(CallbellRateLimitError):
                await hook.aget_message_status(UUID)

        client = redis_server.client()
        before = schedule_calls(client)
        asyncio.run(poll_twice())
        assert schedule_calls(client) - before == 3  # two places taken, one pause
        # Another process's hook of the same account now waits out the pause before its request.
        other = shared_gate(SharedStorage(redis_url), account_id(BASE_URL, TOKEN))
        slept: list[float] = []
        other._sleep = slept.append
        other.acquire()
        assert len(slept) == 1
        assert 2.5 < slept[0] <= 3.0

    def test_an_unreachable_storage_falls_back_to_the_process_gate_with_one_warning(
        self, monkeypatch, requests_mock, tmp_path
    ):
        log = _Log()
        monkeypatch.setattr(CallbellHook, "log", log)  # Airflow's task logger bypasses caplog
        monkeypatch.setattr(ratelimit, "_storages", {})
        port = free_port()  # nothing listens there yet
        set_connection(monkeypatch, extra={"rate_limit_storage": f"redis://:Redis-Secr3t@127.0.0.1:{port}/0"})
        requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        for _ in range(3):  # three hooks (three notifiers, say), two requests each
            hook = CallbellHook()
            hook.send_message("+31612345678", content={"text": "x"})
            hook.send_message("+31612345678", content={"text": "y"})
        assert requests_mock.call_count == 6  # nothing waited on the storage
        warnings = log.at("warning")
        assert len(warnings) == 1
        assert "does not answer" in warnings[0]
        assert "Callbell's 429 answers stay the backstop" in warnings[0]
        assert "redis://***@127.0.0.1" in warnings[0]
        assert "Redis-Secr3t" not in repr(log.lines)
        with hook._gate.limited(10):  # the process's own gate still spaces a bulk send
            assert hook._gate.max_rps == 10

        # The storage comes back: after the retry interval the hooks use it again, and say so once.
        if shutil.which("redis-server") is None:
            pytest.skip(MISSING)
        server = RedisServer(tmp_path, port=port, password="Redis-Secr3t")
        try:
            monkeypatch.setattr(ratelimit, "STORAGE_RETRY_SECONDS", 0.0)
            hook._gate.storage._down_until = 0.0
            CallbellHook().send_message("+31612345678", content={"text": "z"})
            assert [line for line in log.at("info") if "answers again" in line]
            assert len(list(server.client().scan_iter(match="callbell:schedule:*"))) == 1
        finally:
            server.stop()

    def test_the_password_extra_reaches_redis_and_no_log_line(self, monkeypatch, requests_mock, tmp_path):
        if shutil.which("redis-server") is None:
            pytest.skip(MISSING)
        redis = pytest.importorskip("redis")
        password = "Redis@Secr3t/:x"  # characters a URI must quote
        server = RedisServer(tmp_path, password=password)
        try:
            log = _Log()
            monkeypatch.setattr(CallbellHook, "log", log)
            uri = f"redis://127.0.0.1:{server.port}/0"
            extra = {"rate_limit_storage": uri, "rate_limit_storage_password": password}
            set_connection(monkeypatch, extra=extra)
            requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
            hook = CallbellHook()
            hook.send_message("+31612345678", content={"text": "x"})
            assert hook._gate.storage.uri == uri
            client = redis.Redis(port=server.port, password=password)
            assert list(client.scan_iter(match="callbell:schedule:*"))  # it took its place
            assert not log.at("warning")  # authenticated: the storage answered
            assert "Secr3t" not in repr(log.lines)
        finally:
            server.stop()


_CHILD = """
import json, sys
from airflow_provider_callbell.hooks.callbell import CallbellHook

count, name = int(sys.argv[1]), sys.argv[2]
hook = CallbellHook()
hook.session  # the connection read and the session made before the start
print("ready", flush=True)
sys.stdin.readline()
results = hook.send_messages({"to": f"+316{i:08d}", "content": {"text": f"{name} {i}"}} for i in range(count))
print(json.dumps({"failed": sum("error" in r for r in results)}), flush=True)
"""


@pytest.mark.callbell_sandbox(rate_limit=300, latency=0.05)
class TestTwoProcesses:
    """Two OS processes, each with a hook doing a bulk send to the sandbox (which enforces 300/s)."""

    MESSAGES = 900  # per process: several seconds at the account's limit

    def test_they_share_the_account_limit(self, callbell_sandbox, redis_url, redis_server):
        connection = json.loads(callbell_sandbox.connection_json)
        connection["extra"] = {"rate_limit_storage": redis_url}
        env = {**os.environ, "AIRFLOW_CONN_CALLBELL_DEFAULT": json.dumps(connection), "PYTHONPATH": str(ROOT)}
        senders = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(self.MESSAGES), name],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for name in ("first", "second")
        ]
        try:
            for sender in senders:
                assert sender.stdout is not None
                # Airflow 2.11 may print a warning first (an empty Fernet key): wait for "ready".
                lines = iter(sender.stdout.readline, "")
                assert "ready" in (line.strip() for line in lines)
            start = time.monotonic()
            for sender in senders:
                assert sender.stdin is not None
                sender.stdin.write("go\n")
                sender.stdin.flush()
            outcomes = [json.loads(sender.communicate(timeout=300)[0].splitlines()[-1]) for sender in senders]
            seconds = time.monotonic() - start
        finally:
            for sender in senders:
                if sender.poll() is None:
                    os.killpg(sender.pid, 9)
                    sender.wait()
        assert outcomes == [{"failed": 0}, {"failed": 0}]
        stored = Counter(m["body"]["content"]["text"] for m in callbell_sandbox.messages)
        assert len(stored) == 2 * self.MESSAGES
        assert set(stored.values()) == {1}
        answers = Counter(r["status"] for r in callbell_sandbox.requests)
        assert answers[429] <= 0.01 * sum(answers.values())
        print(  # the figures, for the report (pytest -s); throughput is measured by benchmarks/run.py
            f"two processes: {2 * self.MESSAGES} messages in {seconds:.1f} s "
            f"({2 * self.MESSAGES / seconds:.0f}/s), {answers[429]} answered 429"
        )
