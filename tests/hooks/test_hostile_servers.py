"""The hook against hostile and broken servers: never a hang, never the token, only typed errors.

Each server is a raw TCP server on 127.0.0.1 that runs a script per connection (it may trickle
bytes, stay silent, reset the connection or echo our headers back), stopped by its fixture. Every
loop in a script is bounded and ends when the fixture stops the server. Each test asserts its
bound (time, number of requests, memory) and the exception type; the table in
``docs/reliability.md`` lists them.

The hook gets a 0.5 s connect timeout and a 1 s read timeout, so each attempt's deadline is 1.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import socketserver
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import requests

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellAuthError,
    CallbellError,
    CallbellInvalidResponseError,
    CallbellMessageFailedError,
    CallbellNoAnswerError,
    CallbellRateLimitError,
    CallbellServerError,
    CallbellTimeoutError,
)
from airflow_provider_callbell.hooks.callbell import MAX_PAGES, CallbellHook
from airflow_provider_callbell.message_status import message_outcome
from airflow_provider_callbell.retry import RETRY_AFTER_MAX
from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger, CallbellReplyTrigger
from tests.helpers import TOKEN, UUID, set_connection

CONNECT, READ = 0.5, 1.0
DEADLINE = CONNECT + READ
#: What a test allows beyond the deadline: thread and event-loop scheduling on a busy 2-core machine.
SLACK = 1.5
TRICKLE_EVERY = 0.2  # well under the read timeout: a per-read timeout never trips
TRICKLE_MAX_BYTES = 300  # 60 s of trickle at most, were nothing to stop it
STATUS_PATH = f"/v1/messages/status/{UUID}"

Script = Callable[["Exchange"], None]


class Exchange:
    """One connection to a hostile server: the request read, and ways to answer it."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.request = b""

    @property
    def path(self) -> str:
        return self.request.split(b" ", 2)[1].decode() if self.request else ""

    def read_request(self) -> bool:
        """Read one request (head and ``Content-Length`` body); False when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            body += chunk
        self.request = head + b"\r\n\r\n" + body
        return True

    def header(self, name: str) -> str:
        for line in self.request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        self.send(head(status, body, headers) + (body.encode() if isinstance(body, str) else body))

    def trickle(self, data: bytes) -> None:
        """Send ``data`` a byte at a time, one every TRICKLE_EVERY seconds, until done or stopped."""
        for byte in data[:TRICKLE_MAX_BYTES]:
            if self.stop.wait(TRICKLE_EVERY):
                return
            self.send(bytes([byte]))

    def reset(self) -> None:
        """Close with RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def head(status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> bytes:
    length = len(body.encode() if isinstance(body, str) else body)
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in (headers or {"Content-Type": "application/json"}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HostileServer:
    """A TCP server on 127.0.0.1 that runs ``script`` for every request of every connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10)  # no server thread outlives a stuck client for long
                outer.sockets.append(self.request)
                exchange = Exchange(self.request, outer.stop)
                try:
                    while not outer.stop.is_set() and exchange.read_request():
                        outer.requests.append(exchange.request)
                        outer.script(exchange)
                except OSError:
                    pass  # the client gave up (the point of most tests) or the script reset

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True  # server_close() joins every handler thread
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:  # wake handlers waiting for a next request on a kept-alive connection
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., HostileServer]]:
    """Start a hostile server running a script and point the default connection at it."""
    servers: list[HostileServer] = []

    def start(script: Script, **extra: Any) -> HostileServer:
        server = HostileServer(script)
        servers.append(server)
        extra = {"connect_timeout": CONNECT, "read_timeout": READ, "max_retries": 0, **extra}
        set_connection(monkeypatch, host=server.url, extra=extra)
        return server

    yield start
    for server in servers:
        server.close()


def ok_status(exchange: Exchange) -> None:
    exchange.answer(200, json.dumps({"message": {"uuid": UUID, "status": "sent"}}))


def sync_status() -> Any:
    return CallbellHook().get_message_status(UUID)


def sync_send() -> Any:
    return CallbellHook().send_message("+31612345678", content={"text": "x"})


def async_status() -> Any:
    async def run() -> Any:
        hook = CallbellHook()
        try:
            return await hook.aget_message_status(UUID)
        finally:
            await hook.aclose()

    return asyncio.run(run())


PATHS = [
    pytest.param(sync_send, id="send_message"),
    pytest.param(sync_status, id="get_message_status"),
    pytest.param(async_status, id="aget_message_status"),
]


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except BaseException as err:  # the test asserts its type
        return err, time.monotonic() - start
    return None, time.monotonic() - start


class TestDeadline:
    """Each attempt ends within connect timeout + read timeout, however the server trickles."""

    @pytest.mark.parametrize("call", PATHS)
    def test_trickled_body(self, hostile, call):
        body = json.dumps({"message": {"uuid": UUID, "status": "sent", "pad": "x" * 200}}).encode()
        hostile(lambda ex: (ex.send(head(200, body)), ex.trickle(body)))
        err, elapsed = timed(call)
        assert type(err) is CallbellTimeoutError, err
        assert err.status_code is None
        assert err.is_transient
        assert f"within {DEADLINE:g} s" in str(err)
        assert DEADLINE - 0.2 <= elapsed < DEADLINE + SLACK

    @pytest.mark.parametrize("call", PATHS)
    def test_trickled_headers(self, hostile, call):
        hostile(lambda ex: ex.trickle(head(200, "{}") + b"{}"))
        err, elapsed = timed(call)
        assert type(err) is CallbellTimeoutError, err
        assert err.status_code is None
        assert elapsed < DEADLINE + SLACK

    @pytest.mark.parametrize("call", PATHS)
    def test_silent_server(self, hostile, call):
        hostile(lambda ex: ex.stop.wait(30))
        err, elapsed = timed(call)
        assert type(err) is CallbellTimeoutError, err  # the read timeout
        assert err.status_code is None
        assert err.is_transient
        assert elapsed < DEADLINE + SLACK

    @pytest.mark.parametrize("call", PATHS)
    def test_connection_reset(self, hostile, call):
        server = hostile(lambda ex: ex.reset())
        err, elapsed = timed(call)
        assert type(err) is CallbellNoAnswerError, err
        assert "no answer from Callbell" in str(err)
        assert err.status_code is None
        assert elapsed < SLACK
        assert len(server.requests) == 1  # a send whose fate is unknown is not repeated

    def test_a_retry_is_a_new_attempt_with_its_own_deadline(self, hostile):
        """A GET stuck in its headers is retried; each attempt gets the whole deadline, no more.

        (A body stuck past the deadline is not retried: retries happen before an answer is handed over.)
        """
        server = hostile(lambda ex: ex.trickle(head(200, "{}") + b"{}"), max_retries=1, retry_backoff=0.01)
        err, elapsed = timed(sync_status)
        assert type(err) is CallbellTimeoutError
        assert len(server.requests) == 2
        assert 2 * DEADLINE - 0.2 <= elapsed < 2 * DEADLINE + SLACK

    def test_bulk_stop_ends_requests_in_flight_within_the_deadline(self, hostile):
        """What ``on_kill`` does: set ``stop``. Workers stuck on a trickling server end by the deadline."""
        body = json.dumps({"message": {"uuid": UUID, "status": "enqueued"}}).encode()
        server = hostile(lambda ex: (ex.send(head(200, body)), ex.trickle(body)))
        stop = threading.Event()
        outcome: list[BaseException | None] = []
        messages = [{"to": f"+3161234567{i}", "content": {"text": "x"}} for i in range(10)]
        worker = threading.Thread(
            target=lambda: outcome.append(
                timed(lambda: CallbellHook().send_messages(messages, max_workers=4, stop=stop))[0]
            )
        )
        worker.start()
        deadline = time.monotonic() + 5
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopped = time.monotonic()
        stop.set()
        worker.join(DEADLINE + SLACK)
        assert not worker.is_alive()
        assert time.monotonic() - stopped < DEADLINE + SLACK
        assert isinstance(outcome[0], CallbellError)
        assert "stopped" in str(outcome[0])
        assert len(server.requests) == 4  # the 4 in flight; none started after stop


class TestAnswers:
    """Every answer, however odd, becomes a typed error (the same on both paths)."""

    @pytest.mark.parametrize("call", PATHS[1:])
    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            pytest.param((200, "{not json"), CallbellInvalidResponseError, id="invalid-json"),
            pytest.param((200, "<html><body>OK</body></html>"), CallbellInvalidResponseError, id="html-200"),
            pytest.param((502, "<html>Bad gateway</html>"), CallbellServerError, id="html-502"),
            pytest.param((200, "[" * 100_000 + "]" * 100_000), CallbellInvalidResponseError, id="deep-json"),
            pytest.param((200, '{"message": {}}'), CallbellInvalidResponseError, id="no-status"),
            pytest.param(
                (200, '{"message": {"status": "teleported"}}'),
                CallbellInvalidResponseError,
                id="unknown-status",
            ),
            pytest.param((200, '{"message": "sent"}'), CallbellInvalidResponseError, id="message-not-object"),
            pytest.param((200, "null"), CallbellInvalidResponseError, id="json-null"),
        ],
    )
    def test_odd_answer(self, hostile, call, answer, error):
        status, body = answer
        hostile(lambda ex: ex.answer(status, body))
        err, elapsed = timed(call)
        assert type(err) is error, err
        assert err.status_code in (status, None)
        assert len(str(err)) < 1000
        assert elapsed < SLACK

    @pytest.mark.parametrize("call", PATHS[1:])
    def test_unknown_charset(self, hostile, call):
        hostile(
            lambda ex: ex.answer(
                401,
                '{"error": "bad token"}',
                {"Content-Type": "application/json; charset=bogus"},
            )
        )
        err, _ = timed(call)
        assert type(err) is CallbellAuthError, err
        assert err.body == '{"error": "bad token"}'

    def test_unknown_charset_on_a_good_answer_reads_the_json(self, hostile):
        body = json.dumps({"message": {"uuid": UUID, "status": "sent"}})
        hostile(lambda ex: ex.answer(200, body, {"Content-Type": "application/json; charset=bogus"}))
        assert sync_status()["status"] == "sent"
        assert async_status()["status"] == "sent"

    def test_missing_uuid_in_a_send_answer(self, hostile):
        hostile(lambda ex: ex.answer(200, '{"message": {"status": "enqueued"}}'))
        err, _ = timed(sync_send)
        assert type(err) is CallbellInvalidResponseError
        assert "no 'uuid'" in str(err)

    @pytest.mark.parametrize("call", PATHS)
    def test_gzip_bomb(self, hostile, call):
        """50 MB of zeros in 50 kB of gzip: refused at the 1 MiB cap, with memory to match."""
        bomb = gzip.compress(b"0" * (50 << 20), 9)
        hostile(
            lambda ex: ex.answer(200, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        )
        if call is async_status:
            timed(async_status)  # httpx's first import and TLS context are not the answer's cost
        tracemalloc.start()
        try:
            err, elapsed = timed(call)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert type(err) is CallbellInvalidResponseError, err
        assert "larger than 1048576 bytes" in str(err)
        assert err.status_code == 200
        assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"
        assert elapsed < 5

    @pytest.mark.parametrize("call", PATHS)
    @pytest.mark.parametrize("encoding", ["GZIP", "Gzip", "X-GZIP"])
    def test_content_encoding_is_case_insensitive(self, hostile, call, encoding):
        """RFC 9110: content codings are case-insensitive; ``GZIP`` is gzip on both paths."""
        body = gzip.compress(json.dumps({"message": {"uuid": UUID, "status": "sent"}}).encode())
        hostile(
            lambda ex: ex.answer(
                200, body, {"Content-Type": "application/json", "Content-Encoding": encoding}
            )
        )
        assert call()["uuid"] == UUID

    def test_corrupt_gzip(self, hostile):
        hostile(lambda ex: ex.answer(200, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}))
        for call in (sync_status, async_status):
            err, _ = timed(call)
            assert type(err) is CallbellInvalidResponseError, err

    def test_an_unknown_encoding_echoing_the_token_is_refused_without_it(self, hostile):
        hostile(lambda ex: ex.answer(200, b"{}", {"Content-Encoding": f"br-{TOKEN}"}))
        err, _ = timed(async_status)
        assert type(err) is CallbellInvalidResponseError, err
        assert "Content-Encoding" in str(err)
        assert TOKEN not in str(err)

    def test_oversized_plain_answer_on_the_async_path(self, hostile):
        hostile(lambda ex: ex.answer(200, b'{"message": "' + b"x" * (2 << 20) + b'"}'))
        err, _ = timed(async_status)
        assert type(err) is CallbellInvalidResponseError
        assert "larger than 1048576 bytes" in str(err)
        assert len(err.body) == 500


class TestRedirects:
    """A redirect is never followed: it would carry the token to wherever ``Location`` points."""

    @pytest.mark.parametrize("call", PATHS)
    def test_302_with_location_is_not_followed(self, hostile, call):
        def script(ex: Exchange) -> None:
            if ex.path.startswith("/elsewhere"):
                ex.answer(200, json.dumps({"message": {"uuid": UUID, "status": "sent"}}))
            else:
                ex.answer(302, "", {"Location": f"{server.url.rsplit('/', 1)[0]}/elsewhere{ex.path}"})

        server = hostile(script)
        err, _ = timed(call)
        assert type(err) is CallbellAPIError, err
        assert err.status_code == 302
        assert "redirect" in str(err)
        assert [r.split(b" ", 2)[1].startswith(b"/elsewhere") for r in server.requests] == [False]


class TestRetryAfter:
    """A 429 stays a 429 whatever its ``Retry-After``: retried after the backoff, or after a capped wait."""

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("1.5", id="fraction"),
            pytest.param("-5", id="negative"),
            pytest.param("abc", id="text"),
            pytest.param("9" * 5000, id="5000-digits"),
            pytest.param("Fri, 31 Dec 99999 23:59:59 GMT", id="absurd-date"),
        ],
    )
    def test_invalid_falls_back_to_the_backoff(self, hostile, value):
        server = hostile(
            lambda ex: ex.answer(429, '{"error": "slow down"}', {"Retry-After": value}),
            max_retries=2,
            retry_backoff=0.01,
        )
        err, elapsed = timed(sync_send)
        assert type(err) is CallbellRateLimitError, err
        assert err.status_code == 429
        assert err.retry_after is None
        assert len(server.requests) == 3  # retried twice, after the backoff
        assert elapsed < SLACK

    def test_huge_wait_is_capped_and_ends_the_retries(self, hostile):
        server = hostile(
            lambda ex: ex.answer(429, "{}", {"Retry-After": "999999999"}), max_retries=3, retry_backoff=0.01
        )
        err, elapsed = timed(sync_send)
        assert type(err) is CallbellRateLimitError
        assert err.retry_after == RETRY_AFTER_MAX
        assert len(server.requests) == 1  # the wait is beyond the retry budget: no sleeping it out
        assert elapsed < SLACK

    @pytest.mark.parametrize("value", ["1.5", "9" * 5000, "abc"])
    def test_async_path_keeps_the_429(self, hostile, value):
        hostile(lambda ex: ex.answer(429, "{}", {"Retry-After": value}))
        err, _ = timed(async_status)
        assert type(err) is CallbellRateLimitError
        assert err.status_code == 429
        assert err.retry_after is None
        assert err.is_transient


#: The cap docs/reliability.md promises; the test pins it rather than reading the code's constant.
DOCUMENTED_MAX_PAGES = 1000


class TestEndlessPages:
    def test_the_documented_cap(self):
        assert MAX_PAGES == DOCUMENTED_MAX_PAGES
        assert "after 1,000 pages" in (Path(__file__).parents[2] / "docs" / "reliability.md").read_text()

    def test_pages_that_never_end_stop_at_the_cap(self, hostile):
        def script(ex: Exchange) -> None:
            page = ex.path.rsplit("page=", 1)[1]
            if int(page) > DOCUMENTED_MAX_PAGES:  # the cap moved or is gone: fail now, never page on
                ex.answer(404, '{"error": "past the documented cap"}')
                return
            ex.answer(
                200, json.dumps({"templates": [{"uuid": page}], "meta": {"page": page, "pages": 10**9}})
            )

        server = hostile(script)
        err, elapsed = timed(lambda: CallbellHook().list_templates())
        assert type(err) is CallbellInvalidResponseError, err
        assert f"more than {DOCUMENTED_MAX_PAGES} pages" in str(err)
        assert len(server.requests) == DOCUMENTED_MAX_PAGES
        assert elapsed < 60

    def test_a_page_repeating_the_one_before_ends_the_listing(self, hostile):
        server = hostile(
            lambda ex: ex.answer(200, '{"templates": [{"uuid": "t"}], "meta": {"pages": 1000000000}}')
        )
        err, _ = timed(lambda: CallbellHook().list_templates())
        assert type(err) is CallbellInvalidResponseError
        assert "page 2 repeats page 1" in str(err)
        assert len(server.requests) == 2

    def test_an_empty_page_ends_the_listing(self, hostile):
        def script(ex: Exchange) -> None:
            page = int(ex.path.rsplit("page=", 1)[1])
            items = [{"uuid": str(page)}] if page < 3 else []
            ex.answer(200, json.dumps({"channels": items, "meta": {"pages": 10**9}}))

        server = hostile(script)
        assert CallbellHook().list_channels() == [{"uuid": "1"}, {"uuid": "2"}]
        assert len(server.requests) == 3


def echo_headers(status: int) -> Script:
    """A server (a proxy, a debug endpoint) that echoes the request's headers in its answer."""

    def script(ex: Exchange) -> None:
        headers = ex.request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        ex.answer(status, json.dumps({"error": "denied", "you_sent": headers, "token": TOKEN}))

    return script


def assert_no_token(err: BaseException) -> None:
    """Neither the error nor anything it chains to holds the token or the request."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    assert seen == [err], f"chained: {seen[1:]}"
    for exc in seen:
        assert TOKEN not in str(exc)
        assert TOKEN not in repr(exc)
        for value in vars(exc).values():
            assert not isinstance(
                value, (requests.PreparedRequest, requests.Response, httpx.Request, httpx.Response)
            )
            assert TOKEN not in repr(value)
            assert "Bearer" not in repr(value)


class TestTheTokenNeverLeaves:
    @pytest.mark.parametrize("call", PATHS)
    @pytest.mark.parametrize("status", [401, 500, 200])
    def test_echoed_headers_are_redacted_in_the_error(self, hostile, call, status):
        hostile(echo_headers(status))
        err, _ = timed(call)
        assert isinstance(err, CallbellAPIError), err
        assert "you_sent" in err.body  # the excerpt is kept, the token is not
        assert "Authorization: ***" in err.body
        assert_no_token(err)

    @pytest.mark.parametrize("call", PATHS)
    def test_no_answer_errors_chain_to_nothing(self, hostile, call):
        hostile(lambda ex: ex.reset())
        err, _ = timed(call)
        assert_no_token(err)

    @pytest.mark.parametrize("call", PATHS)
    def test_deadline_errors_chain_to_nothing(self, hostile, call):
        hostile(lambda ex: ex.trickle(head(200, "{}")))
        err, _ = timed(call)
        assert_no_token(err)

    def test_test_connection_message(self, hostile):
        hostile(echo_headers(401))
        ok, message = CallbellHook().test_connection()
        assert not ok
        assert "you_sent" in message
        assert TOKEN not in message
        assert "Bearer" not in message

    def test_test_connection_success_message(self, hostile):
        hostile(lambda ex: ex.answer(200, json.dumps({"user_email": f"Bearer {TOKEN}"})))
        ok, message = CallbellHook().test_connection()
        assert ok
        assert TOKEN not in message

    def test_bulk_failure_records(self, hostile):
        hostile(echo_headers(500))
        results = CallbellHook().send_messages(
            [{"to": f"+3161234567{i}", "content": {"text": "x"}} for i in range(3)]
        )
        assert [r["status_code"] for r in results] == [500, 500, 500]
        assert all("you_sent" in r["error"] for r in results)
        assert TOKEN not in json.dumps(results)
        assert "Bearer" not in json.dumps(results)

    @pytest.mark.parametrize("status", [401, 404])
    def test_trigger_event(self, hostile, status):
        hostile(echo_headers(status))
        trigger = CallbellMessageStatusTrigger(
            message_uuid=UUID, end_time=time.time() + 5, poll_interval=0.05
        )

        async def collect() -> list[dict[str, Any]]:
            return [event.payload async for event in trigger.run()]

        (event,) = asyncio.run(collect())
        assert event["event"] == "error"
        assert event["status_code"] == status
        assert "you_sent" in event["body"]
        assert TOKEN not in json.dumps(event)
        assert "Bearer" not in json.dumps(event)

    def test_debug_logs(self, hostile, caplog):
        """The hook's own lines (Airflow's logger, recorded here at every level) and the libraries'."""
        hostile(echo_headers(500))
        caplog.set_level(logging.DEBUG)
        lines: list[str] = []

        class Recorder:
            def __getattr__(self, level: str) -> Callable[..., None]:
                return lambda msg, *args, **_: lines.append(f"{level.upper()} {msg % args}")

        with mock.patch.object(CallbellHook, "log", new_callable=mock.PropertyMock, return_value=Recorder()):
            results = CallbellHook().send_messages([{"to": "+31612345678", "content": {"text": "x"}}])
            with pytest.raises(CallbellServerError):
                sync_status()
            with pytest.raises(CallbellServerError):
                async_status()
        logged = "\n".join([*lines, *(record.getMessage() for record in caplog.records)])
        assert "DEBUG Callbell refused a message to +31612345678" in logged
        assert "you_sent" in logged  # the failure was logged, with its (redacted) excerpt
        assert "httpcore" in caplog.text  # the libraries logged at DEBUG too
        assert TOKEN not in logged
        assert "error" in results[0]


#: A uuid a server forges a log line with: a newline, a fake log record, terminal escapes.
FORGED_UUID = UUID + "\n[2026-01-01 00:00:00] INFO - Task succeeded\x1b[2K\x1b[1G"


def echo_authorization_as(key: str) -> Script:
    """A server (a proxy, a debug endpoint) that answers with the request's Authorization as a uuid."""

    def script(ex: Exchange) -> None:
        ex.answer(200, json.dumps({key: {"uuid": ex.header("Authorization"), "status": "enqueued"}}))

    return script


def assert_shown_safely(text: str) -> None:
    """Text a log line or an error shows: no line of its own, no terminal escape, no token."""
    for raw in ("\n", "\r", "\x1b", "\u2028", "\x85"):
        assert raw not in text, f"{raw!r} in {text!r}"
    assert TOKEN not in text


def assert_token_gone(err: BaseException) -> None:
    """The token is in nothing the error holds or says (``Bearer ***`` may stay: the scheme is no secret)."""
    assert err.__cause__ is None
    assert TOKEN not in str(err)
    assert TOKEN not in repr(vars(err))


class TestValuesFromAnswers:
    """A value taken from an answer is checked before it goes into a URL, a log, XCom or an event."""

    def test_a_send_answers_uuid_cannot_forge_a_log_line(self, hostile, caplog):
        hostile(
            lambda ex: ex.answer(200, json.dumps({"message": {"uuid": FORGED_UUID, "status": "enqueued"}}))
        )
        caplog.set_level(logging.DEBUG)
        err, _ = timed(sync_send)
        assert type(err) is CallbellInvalidResponseError, err
        assert "is not a Callbell uuid" in str(err)
        assert err.maybe_acted_on  # a 200: the message may have gone out
        assert_shown_safely(str(err))
        assert all("Task succeeded" not in record.getMessage() for record in caplog.records)

    def test_a_send_answers_uuid_never_reaches_a_bulk_result(self, hostile, caplog):
        hostile(
            lambda ex: ex.answer(200, json.dumps({"message": {"uuid": FORGED_UUID, "status": "enqueued"}}))
        )
        caplog.set_level(logging.DEBUG)
        (result,) = CallbellHook().send_messages([{"to": "+31612345678", "content": {"text": "x"}}])
        assert "uuid" not in result
        assert result["error"].startswith("CallbellInvalidResponseError:")
        assert result["delivery_unknown"] is True
        assert_shown_safely(result["error"])
        assert all("Task succeeded" not in record.getMessage() for record in caplog.records)

    def test_a_send_answer_with_an_unknown_status_is_invalid(self, hostile):
        hostile(lambda ex: ex.answer(200, json.dumps({"message": {"uuid": UUID, "status": "\x1b[31mok"}})))
        err, _ = timed(sync_send)
        assert type(err) is CallbellInvalidResponseError, err
        assert "unknown status" in str(err)
        assert_shown_safely(str(err))

    @pytest.mark.parametrize("call", PATHS)
    def test_an_echoed_authorization_header_as_uuid_is_an_invalid_answer(self, hostile, call):
        hostile(echo_authorization_as("message"))
        err, _ = timed(call)
        assert type(err) is CallbellInvalidResponseError, err
        assert '"uuid": "Bearer ***"' in err.body
        assert_token_gone(err)

    def test_a_contact_uuid_echoing_the_authorization_header(self, hostile):
        """Not a CallbellValidationError (which blames the caller) from the uuid check of the next request."""
        server = hostile(echo_authorization_as("contact"))
        err, _ = timed(lambda: CallbellHook().get_contact_by_phone("+31612345678"))
        assert type(err) is CallbellInvalidResponseError, err
        assert "the answer's contact has a 'uuid' that is not a Callbell uuid" in str(err)
        assert_token_gone(err)
        assert len(server.requests) == 1  # the uuid went into no URL

    def test_a_contact_uuid_echoing_the_authorization_header_in_a_trigger_event(self, hostile):
        hostile(echo_authorization_as("contact"))
        trigger = CallbellReplyTrigger(to="+31612345678", end_time=time.time() + 5, poll_interval=0.05)

        async def collect() -> list[dict[str, Any]]:
            return [event.payload async for event in trigger.run()]

        (event,) = asyncio.run(collect())
        assert event["event"] == "error"
        assert event["error_class"] == "CallbellInvalidResponseError"
        assert TOKEN not in json.dumps(event)

    @pytest.mark.parametrize("call", PATHS[1:])
    def test_a_status_answers_uuid_is_checked(self, hostile, call):
        hostile(lambda ex: ex.answer(200, json.dumps({"message": {"uuid": FORGED_UUID, "status": "failed"}})))
        err, _ = timed(call)
        assert type(err) is CallbellInvalidResponseError, err
        assert_shown_safely(str(err))

    def test_a_failure_reason_cannot_forge_a_log_line(self, hostile):
        reason = f"blocked\n[2026-01-01] INFO - Task succeeded\x1b[2K Authorization: Bearer {TOKEN}"
        answer = {"message": {"uuid": UUID, "status": "failed", "messageStatusPayload": {"reason": reason}}}
        hostile(lambda ex: ex.answer(200, json.dumps(answer)))
        message = sync_status()
        err, _ = timed(lambda: message_outcome(message, ("delivered",), ("failed",)))
        assert type(err) is CallbellMessageFailedError, err
        assert err.reason.startswith(
            "blocked\\n[2026-01-01] INFO - Task succeeded\\x1b[2K Authorization: ***"
        )
        assert_shown_safely(str(err))

    def test_test_connection_shows_the_users_email_escaped(self, hostile):
        hostile(
            lambda ex: ex.answer(
                200, json.dumps({"user_email": "me@example.com\nConnection verified by ACME"})
            )
        )
        ok, message = CallbellHook().test_connection()
        assert ok
        assert message == "Connected to Callbell as me@example.com\\nConnection verified by ACME"

    @pytest.mark.parametrize("call", PATHS)
    def test_a_broken_status_line_cannot_forge_a_log_line(self, hostile, call, caplog):
        hostile(lambda ex: ex.send(b"HTTP/1.1 2\x1b[2K00 OK\nINFO - Task succeeded\r\n\r\n"))
        caplog.set_level(logging.DEBUG)
        err, _ = timed(call)
        assert isinstance(err, CallbellAPIError), err
        assert_shown_safely(str(err))


class TestBulkNeverAborts:
    def test_every_message_gets_a_result_whatever_its_answer(self, hostile):
        """One server, one odd answer per message: every message gets its own result, in order."""
        answers = {
            "+31600000001": lambda ex: ex.answer(
                200, json.dumps({"message": {"uuid": UUID, "status": "enqueued"}})
            ),
            "+31600000002": lambda ex: ex.answer(200, "[" * 100_000 + "]" * 100_000),
            "+31600000003": lambda ex: ex.answer(401, "{}", {"Content-Type": "text/plain; charset=bogus"}),
            "+31600000004": lambda ex: ex.answer(429, "{}", {"Retry-After": "9" * 5000}),
            "+31600000005": lambda ex: ex.answer(200, "<html>hi</html>"),
            "+31600000006": lambda ex: (ex.send(head(200, "x" * 100)), ex.trickle(b"x" * 100)),
            "+31600000007": lambda ex: ex.reset(),
        }

        def script(ex: Exchange) -> None:
            to = json.loads(ex.request.split(b"\r\n\r\n", 1)[1])["to"]
            answers[to](ex)

        hostile(script)
        start = time.monotonic()
        results = CallbellHook().send_messages(
            [{"to": to, "content": {"text": "x"}} for to in answers], max_workers=len(answers)
        )
        assert time.monotonic() - start < DEADLINE + SLACK
        assert results[0]["uuid"] == UUID
        assert [r.get("status_code") for r in results[1:]] == [200, 401, 429, 200, None, None]
        assert [r["error"].split(":", 1)[0] for r in results[1:]] == [
            "CallbellInvalidResponseError",
            "CallbellAuthError",
            "CallbellRateLimitError",
            "CallbellInvalidResponseError",
            "CallbellTimeoutError",
            "CallbellNoAnswerError",
        ]


class TestProxies:
    """The environment's proxy settings are read once per session, and still honoured."""

    def test_https_proxy_is_used(self, monkeypatch, hostile):
        proxy = hostile(lambda ex: ex.answer(403, ""))  # a proxy refusing the tunnel
        set_connection(monkeypatch, extra={"max_retries": 0})  # the default https base URL
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.rsplit("/", 1)[0])
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        err, _ = timed(sync_status)
        assert type(err) is CallbellNoAnswerError
        assert [r.split(b"\r\n", 1)[0] for r in proxy.requests] == [b"CONNECT api.callbell.eu:443 HTTP/1.0"]

    def test_no_proxy_is_honoured(self, monkeypatch, hostile):
        proxy = hostile(lambda ex: ex.answer(403, ""))
        server = hostile(ok_status)  # the connection now points here
        monkeypatch.setenv("HTTP_PROXY", proxy.url.rsplit("/", 1)[0])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert sync_status()["status"] == "sent"
        assert proxy.requests == []
        assert len(server.requests) == 1

    def test_http_proxy_is_used_for_a_plain_http_base_url(self, monkeypatch, hostile):
        proxy = hostile(ok_status)  # a proxy that answers for the origin
        server = hostile(ok_status)
        monkeypatch.setenv("HTTP_PROXY", proxy.url.rsplit("/", 1)[0])
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert sync_status()["status"] == "sent"
        assert server.requests == []
        (request,) = proxy.requests
        assert request.startswith(f"GET {server.url}/messages/status/{UUID} HTTP/1.1".encode())

    def test_environment_is_read_once_per_session(self, monkeypatch, hostile):
        proxy = hostile(lambda ex: ex.answer(403, ""))
        server = hostile(ok_status)
        monkeypatch.delenv("HTTP_PROXY", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        hook = CallbellHook()
        hook.get_message_status(UUID)
        monkeypatch.setenv("HTTP_PROXY", proxy.url.rsplit("/", 1)[0])
        hook.get_message_status(UUID)
        assert proxy.requests == []
        assert len(server.requests) == 2


class TestCABundle:
    """``REQUESTS_CA_BUNDLE`` is trusted by both transports: sends from workers, polls in the triggerer."""

    def test_both_paths_trust_the_bundle_requests_would(self, monkeypatch, tmp_path, callbell_conn):
        import certifi

        from airflow_provider_callbell.transport import tls

        pem = Path(certifi.where()).read_text()
        one_ca = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        bundle = tmp_path / "company-ca.pem"
        bundle.write_text(one_ca[one_ca.index("-----BEGIN CERTIFICATE-----") :] + "\n")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        monkeypatch.setattr(tls, "_SSL_CONTEXT", [])  # built once per process: build it anew

        assert CallbellHook().session.verify == str(bundle)
        assert len(tls.default_ssl_context().get_ca_certs()) == 1
