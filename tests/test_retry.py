"""The retry policy, decided per cause, over real HTTP: a scripted local server answers each attempt."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellAuthError,
    CallbellConnectionConfigError,
    CallbellRateLimitError,
    CallbellServerError,
    CallbellTimeoutError,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.retry import RETRY_AFTER_MAX, RetryPolicy, parse_retry_after
from tests.helpers import TOKEN, UUID, Waits, set_connection

OK = (200, {}, json.dumps({"message": {"uuid": UUID, "status": "enqueued"}}), 0.0)


class ScriptedServer:
    """Answers each request with the next (status, headers, body, delay) of its script."""

    def __init__(self) -> None:
        self.script: deque[tuple[int, dict[str, str], str, float]] = deque()
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.seen.append(f"{self.command} {self.path}")
                status, headers, body, delay = server.script.popleft() if server.script else OK
                time.sleep(delay)
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, *statuses: int | tuple[int, dict[str, str]], delay: float = 0.0) -> None:
        for item in statuses:
            status, headers = item if isinstance(item, tuple) else (item, {})
            self.script.append((status, headers, '{"error": "scripted"}', delay))


@pytest.fixture
def server(monkeypatch):
    scripted = ScriptedServer()
    set_connection(monkeypatch, host=scripted.url)
    yield scripted
    scripted.httpd.shutdown()
    scripted.httpd.server_close()


@pytest.fixture
def waits():
    return Waits()


def hook(waits: Waits, timeout: tuple[float, float] | None = None, **policy: object) -> CallbellHook:
    retry_policy = RetryPolicy(sleep=waits.sleep, clock=waits.clock, **policy)  # type: ignore[arg-type]
    return CallbellHook(timeout=timeout, retry_policy=retry_policy)


def send(h: CallbellHook) -> dict:
    return h.send_message("+31612345678", content={"text": "x"})


class TestWhatIsRetried:
    @pytest.mark.parametrize("status", [429, 502, 503, 504])
    def test_nothing_done_answers_are_retried(self, server, waits, status):
        server.answer(status, status)
        assert send(hook(waits))["uuid"] == UUID
        assert len(server.seen) == 3
        assert len(waits) == 2

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
    def test_other_4xx_are_never_retried(self, server, waits, status):
        server.answer(status)
        with pytest.raises(CallbellAPIError) as excinfo:
            send(hook(waits))
        assert excinfo.value.status_code == status
        assert (len(server.seen), waits) == (1, [])

    def test_500_on_send_is_not_retried_at_most_once(self, server, waits):
        server.answer(500)
        with pytest.raises(CallbellServerError):
            send(hook(waits))
        assert len(server.seen) == 1

    def test_500_on_send_is_retried_at_least_once(self, server, waits):
        server.answer(500)
        assert send(hook(waits, delivery="at_least_once"))["uuid"] == UUID
        assert server.seen == ["POST /v1/messages/send"] * 2

    def test_500_on_read_is_retried(self, server, waits):
        server.answer(500)
        server.script.append((200, {}, json.dumps({"message": {"uuid": UUID, "status": "read"}}), 0.0))
        assert hook(waits).get_message_status(UUID)["status"] == "read"
        assert len(server.seen) == 2

    def test_read_timeout_on_send_is_not_retried(self, server, waits):
        server.answer(200, delay=0.5)
        h = hook(waits, timeout=(1, 0.1))
        with pytest.raises(CallbellAPIError, match="ReadTimeout") as excinfo:
            send(h)
        assert excinfo.value.status_code is None
        assert len(server.seen) == 1

    def test_read_timeout_is_retried_at_least_once(self, server, waits):
        server.answer(200, delay=0.5)
        h = CallbellHook(
            timeout=(1, 0.1), retry_policy=RetryPolicy(sleep=waits.append, delivery="at_least_once")
        )
        assert send(h)["uuid"] == UUID
        assert len(server.seen) == 2

    def test_refused_connection_is_retried_then_typed(self, monkeypatch, waits):
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        set_connection(monkeypatch, host=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(CallbellAPIError, match="no answer from Callbell") as excinfo:
            send(hook(waits))
        assert excinfo.value.status_code is None
        assert len(waits) == 3

    @pytest.mark.parametrize("max_retries", [0, 2])
    def test_a_connect_timeout_proves_nothing_was_sent(self, monkeypatch, waits, max_retries):
        """At most once may send again a message that could not have left: ``maybe_acted_on`` is False."""
        with socket.socket() as listener:  # a full accept queue: the kernel drops the next SYNs
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            with socket.create_connection(listener.getsockname()):
                set_connection(monkeypatch, host=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
                with pytest.raises(CallbellTimeoutError) as excinfo:
                    send(hook(waits, timeout=(0.2, 1.0), max_retries=max_retries))
        assert "ConnectTimeout" in str(excinfo.value)
        assert excinfo.value.maybe_acted_on is False
        assert len(waits) == max_retries  # nothing was sent: retried even at most once

    def test_retries_can_be_turned_off(self, server, waits):
        server.answer(503)
        with pytest.raises(CallbellServerError):
            send(hook(waits, max_retries=0))
        assert (len(server.seen), waits) == (1, [])

    def test_exhausted_retries_give_the_typed_error(self, server, waits):
        server.answer(503, 503, 503, 503)
        with pytest.raises(CallbellServerError) as excinfo:
            send(hook(waits))
        assert excinfo.value.status_code == 503
        assert len(server.seen) == 4


class TestHowLongItWaits:
    def test_retry_after_seconds(self, server, waits):
        server.answer((429, {"Retry-After": "2"}))
        send(hook(waits))
        assert waits == [2.0]

    def test_retry_after_http_date(self, server, waits):
        when = email.utils.formatdate(time.time() + 5, usegmt=True)
        server.answer((429, {"Retry-After": when}))
        send(hook(waits))
        assert 3.0 <= waits[0] <= 5.0

    def test_retry_after_zero_means_now(self, server, waits):
        """``0`` is a readable answer (retry at once), not an unreadable one (fall back to the backoff)."""
        server.answer((429, {"Retry-After": "0"}))
        send(hook(waits, backoff=5.0))
        assert len(server.seen) == 2
        assert sum(waits) == 0  # the backoff would have waited 2.5 s or more

    def test_exponential_backoff_with_jitter(self, server, waits):
        server.answer(503, 503, 503)
        send(hook(waits, backoff=1.0))
        first, second, third = waits
        assert 0.5 <= first <= 1.5
        assert 1.0 <= second <= 3.0
        assert 2.0 <= third <= 6.0

    def test_backoff_max_caps_each_wait(self, server, waits):
        server.answer(503, 503, 503)
        send(hook(waits, backoff=10.0, backoff_max=2.0))
        assert all(w <= 3.0 for w in waits)

    def test_retry_after_beyond_budget_gives_up_at_once(self, server, waits):
        server.answer((429, {"Retry-After": "120"}))
        with pytest.raises(CallbellRateLimitError) as excinfo:
            send(hook(waits, max_seconds=60))
        assert waits == []
        assert excinfo.value.retry_after == 120.0
        assert len(server.seen) == 1

    def test_budget_bounds_total_waiting(self, server, waits):
        server.answer(*[(429, {"Retry-After": "4"})] * 4)
        with pytest.raises(CallbellRateLimitError):
            send(hook(waits, max_retries=10, max_seconds=10))
        assert waits == [4.0, 4.0]  # a third wait would end past the 10 s budget


class TestRetryLogs:
    def test_each_retry_is_logged_with_its_reason_and_never_the_token(self, server, waits, monkeypatch):
        lines: list[str] = []
        h = hook(waits)

        class Recorder:
            def __getattr__(self, level):
                return lines.append if level == "warning" else lambda *args: None

        monkeypatch.setattr(CallbellHook, "log", property(lambda _: Recorder()))
        server.answer(503, (429, {"Retry-After": "1"}))
        send(h)
        assert lines == [
            "Callbell POST /v1/messages/send: HTTP 503; retry 1 of 3 in " + f"{waits[0]:.2f} s",
            "Callbell POST /v1/messages/send: HTTP 429; retry 2 of 3 in 1.00 s",
        ]
        assert not any(TOKEN in line for line in lines)


class TestPolicyFromConnection:
    def test_extras_configure_the_policy(self, monkeypatch, server):
        set_connection(
            monkeypatch,
            host=server.url,
            extra={
                "max_retries": "5",
                "retry_max_seconds": 9,
                "retry_backoff": "0.1",
                "delivery": "at_least_once",
            },
        )
        policy = CallbellHook()._settings.retry
        assert (policy.max_retries, policy.max_seconds, policy.backoff, policy.delivery) == (
            5,
            9.0,
            0.1,
            "at_least_once",
        )

    def test_defaults(self, callbell_conn):
        assert CallbellHook()._settings.retry == RetryPolicy()
        assert RetryPolicy().delivery == "at_most_once"

    def test_hook_argument_wins(self, monkeypatch):
        set_connection(monkeypatch, extra={"max_retries": 5})
        assert CallbellHook(retry_policy=RetryPolicy(max_retries=1))._settings.retry.max_retries == 1

    @pytest.mark.parametrize(
        ("extra", "match"),
        [
            pytest.param({"max_retries": "many"}, "extra 'max_retries' must be a int", id="retries-not-int"),
            pytest.param({"max_retries": -1}, "max_retries must be a whole number", id="retries-negative"),
            pytest.param(
                {"retry_max_seconds": "x"}, "extra 'retry_max_seconds' must be a float", id="budget"
            ),
            pytest.param({"retry_backoff": -2}, "backoff must be a number of seconds", id="backoff"),
            pytest.param(
                {"delivery": "exactly_once"}, "delivery must be one of 'at_most_once'", id="delivery"
            ),
        ],
    )
    def test_bad_extras_are_named(self, monkeypatch, extra, match):
        set_connection(monkeypatch, extra=extra)
        with pytest.raises(CallbellConnectionConfigError, match=match):
            CallbellHook().list_templates()

    def test_auth_error_is_not_retried(self, server, waits):
        server.answer(401)
        with pytest.raises(CallbellAuthError):
            send(hook(waits))
        assert len(server.seen) == 1


class TestParseRetryAfter:
    NOW = 1_800_000_000.0

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            pytest.param(None, None, id="absent"),
            pytest.param("7", 7.0, id="seconds"),
            pytest.param(" 7 ", 7.0, id="padded"),
            pytest.param("0", 0.0, id="zero"),
            pytest.param("999999999", RETRY_AFTER_MAX, id="huge-capped"),
            pytest.param("1.5", None, id="fraction"),
            pytest.param("-5", None, id="negative"),
            pytest.param("abc", None, id="text"),
            pytest.param("", None, id="empty"),
            pytest.param("9" * 5000, None, id="5000-digits"),
            pytest.param("٣", None, id="non-ascii-digit"),
            pytest.param(email.utils.formatdate(NOW + 30, usegmt=True), 30.0, id="date"),
            pytest.param(email.utils.formatdate(NOW - 30, usegmt=True), 0.0, id="past-date"),
            pytest.param(email.utils.formatdate(NOW + 10**6, usegmt=True), RETRY_AFTER_MAX, id="far-date"),
            pytest.param("Fri, 31 Dec 99999 23:59:59 GMT", None, id="absurd-year"),
            pytest.param("Mon, 30 Nov 2026 08:00:00 " + "x" * 100, None, id="long-garbage"),
        ],
    )
    def test_values(self, value, seconds):
        assert parse_retry_after(value, now=lambda: self.NOW) == seconds
