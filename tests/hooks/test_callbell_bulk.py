"""``CallbellHook.send_messages`` over real HTTP, against a server scripted per message.

Workers answer in any order, so the server is scripted by message rather than by arrival: a
message's ``metadata`` says how to answer it (``status``, ``status_once``, ``retry_after``, ``delay``,
``after``: answer only once that many other messages were answered).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.retry import RetryPolicy
from tests.helpers import TOKEN, Waits, set_connection


class BulkServer:
    """Answers ``POST /messages/send`` as each message's metadata says; records every arrival."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str, int]] = []  # (monotonic time, to, status answered)
        self.accepted: dict[str, dict[str, Any]] = {}  # uuid -> body
        self.answered_at: dict[str, float] = {}  # to -> when its last refusal was answered
        self.lock = threading.Lock()
        self.answered = threading.Condition(self.lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arrived = time.monotonic()
                script = body.get("metadata", {})
                to = body.get("to", body.get("bsuid"))
                with server.lock:
                    first = all(seen != to for _, seen, _ in server.arrivals)
                    status = int(script.get("status") or (script.get("status_once") if first else 0) or 200)
                    server.arrivals.append((arrived, to, status))
                time.sleep(float(script.get("delay", 0)))
                with server.answered:
                    server.answered.wait_for(
                        lambda: len(server.answered_at) >= int(script.get("after", 0)), 10
                    )
                if status == 200:
                    message_uuid = uuid.uuid4().hex
                    with server.lock:
                        server.accepted[message_uuid] = body
                    answer = {"message": {"uuid": message_uuid, "status": "enqueued"}}
                else:
                    answer = {"error": f"scripted {status}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                if "retry_after" in script:
                    self.send_header("Retry-After", script["retry_after"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with server.answered:
                    server.answered_at[to] = time.monotonic()
                    server.answered.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # every worker connects at once: the default backlog of 5 overflows

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def received(self) -> list[str]:
        """The recipients of the accepted messages."""
        return sorted(body["to"] for body in self.accepted.values())


@pytest.fixture
def server(monkeypatch):
    scripted = BulkServer()
    set_connection(monkeypatch, host=scripted.url, extra={"max_retries": 0})
    yield scripted
    scripted.httpd.shutdown()
    scripted.httpd.server_close()


def phone(i: int) -> str:
    return f"+316{i:08d}"


def message(i: int, **script: str) -> dict[str, Any]:
    return {"to": phone(i), "content": {"text": f"message {i}"}, **({"metadata": script} if script else {})}


class TestSendMessages:
    def test_results_follow_input_order_whatever_order_answers_come_in(self, server):
        messages = [message(0, after="5")] + [message(i) for i in range(1, 6)]  # the first answers last
        results = CallbellHook().send_messages(messages, max_workers=6)
        assert [server.accepted[r["uuid"]]["to"] for r in results] == [phone(i) for i in range(6)]
        assert all(r["status"] == "enqueued" for r in results)
        answered = [to for to, _ in sorted(server.answered_at.items(), key=lambda item: item[1])]
        assert answered[-1] == phone(0)  # the answers did come back out of order

    def test_failures_are_recorded_and_never_stop_the_others(self, server):
        messages = [message(i) for i in range(8)]
        messages[2] = message(2, status="422")
        messages[5] = message(5, status="503")
        results = CallbellHook().send_messages(messages, max_workers=3)
        assert results[2] == {
            "error": "CallbellAPIError: POST /messages/send: Callbell refused the request (HTTP 422); "
            'response body: \'{"error": "scripted 422"}\'',
            "status_code": 422,
            "to": phone(2),
        }
        assert results[5]["error"].startswith("CallbellServerError: POST /messages/send: Callbell failed")
        assert (results[5]["status_code"], results[5]["to"]) == (503, phone(5))
        assert [i for i, r in enumerate(results) if "uuid" in r] == [0, 1, 3, 4, 6, 7]
        assert server.received() == [phone(i) for i in (0, 1, 3, 4, 6, 7)]
        assert not any(TOKEN in json.dumps(r) for r in results)

    def test_an_unexpected_error_in_one_worker_is_that_messages_failure(self, server, monkeypatch):
        """A bug or an answer nobody foresaw fails its own message, not the whole send."""
        real = CallbellHook._post_message

        def post(hook: CallbellHook, payload: dict[str, Any]) -> dict[str, Any]:
            if payload["to"] == phone(1):
                raise LookupError(f"unknown encoding: Bearer {TOKEN}")
            return real(hook, payload)

        monkeypatch.setattr(CallbellHook, "_post_message", post)
        results = CallbellHook().send_messages([message(i) for i in range(4)], max_workers=2)
        assert results[1] == {
            "error": "CallbellAPIError: POST /messages/send: unexpected LookupError: unknown encoding: Bearer ***",
            "status_code": None,
            "to": phone(1),
            "delivery_unknown": True,  # the error may have come after the message went out
        }
        assert [i for i, r in enumerate(results) if "uuid" in r] == [0, 2, 3]
        assert server.received() == [phone(i) for i in (0, 2, 3)]

    def test_nothing_is_sent_until_every_message_is_valid(self, server):
        messages = [message(i) for i in range(5)] + [
            {"to": phone(5), "type": "image", "content": {"text": "x"}}
        ]
        with pytest.raises(
            CallbellValidationError,
            match=r"^1 of 6 messages are invalid, so none was sent: messages\[5\]: content",
        ):
            CallbellHook().send_messages(messages)
        assert server.arrivals == []

    def test_no_messages_no_requests(self, server):
        assert CallbellHook().send_messages(iter([])) == []
        assert server.arrivals == []

    def test_a_generator_is_read_one_message_at_a_time_and_all_before_the_first_send(self, server):
        """The input is never held whole: at most one message of it is alive at any time."""

        class Message(dict):  # a dict that can be watched with a weak reference
            __hash__ = object.__hash__

        alive: weakref.WeakSet[Message] = weakref.WeakSet()
        seen: list[tuple[int, int]] = []  # (messages of the input still alive, requests made so far)

        def read_rows():
            for i in range(300):
                seen.append((len(alive), len(server.arrivals)))
                row = Message(message(i))
                alive.add(row)
                yield row
                del row

        results = CallbellHook().send_messages(read_rows(), max_rps=10_000)
        assert len(results) == 300
        assert max(count for count, _ in seen) <= 1
        assert {requests for _, requests in seen} == {0}
        assert len(server.accepted) == 300

    def test_a_429_pauses_every_worker_for_its_retry_after(self, monkeypatch, server):
        set_connection(monkeypatch, host=server.url)  # retries on, as by default
        messages = [message(0, status_once="429", retry_after="1")] + [message(i) for i in range(1, 4)]
        results = CallbellHook().send_messages(messages, max_rps=4, max_workers=4)
        assert all("uuid" in r for r in results)
        first, *later = server.arrivals
        assert first[1:] == (phone(0), 429)
        # Requests are 0.25 s apart; without the shared pause the next would start 0.25 s after the 429.
        refused_at = first[0]
        assert all(at >= refused_at + 1.0 for at, _, _ in later), [
            round(at - refused_at, 3) for at, _, _ in later
        ]
        assert sorted(to for _, to, status in later if status == 200) == [phone(i) for i in range(4)]

    @pytest.mark.parametrize("max_rps", [float("inf"), 1e-300, float("nan"), 20_000])
    def test_an_absurd_max_rps_is_refused_before_any_request(self, server, max_rps):
        with pytest.raises(
            CallbellValidationError, match=r"^max_rps must be a number of requests per second"
        ):
            CallbellHook().send_messages([message(0), message(1)], max_rps=max_rps)
        assert server.arrivals == []

    def test_from_alias_and_connection_defaults(self, monkeypatch, server):
        set_connection(monkeypatch, host=server.url, extra={"max_retries": 0, "channel_uuid": "chan-1"})
        CallbellHook().send_messages([{"to": "tg_42", "from": "telegram", "content": {"text": "hi"}}])
        (body,) = server.accepted.values()
        assert body == {
            "to": "tg_42",
            "from": "telegram",
            "type": "text",
            "content": {"text": "hi"},
            "channel_uuid": "chan-1",
        }

    def test_sends_at_the_default_rate_unless_told(self, server, monkeypatch):
        rates: list[float | None] = []
        hook = CallbellHook()
        original = hook._post_message
        monkeypatch.setattr(
            hook, "_post_message", lambda payload: rates.append(hook._gate.max_rps) or original(payload)
        )
        hook.send_messages([message(0)])
        hook.send_messages([message(1)], max_rps=50)
        assert rates == [285.0, 50.0]
        assert hook._gate.max_rps is None  # single sends are not spaced after a bulk send

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"max_rps": 0}, "max_rps must be a number", id="rps-zero"),
            pytest.param({"max_rps": True}, "max_rps must be a number", id="rps-bool"),
            pytest.param(
                {"max_workers": 0}, "max_workers must be a whole number from 1 to 64", id="workers-zero"
            ),
            pytest.param(
                {"max_workers": 65}, "max_workers must be a whole number from 1 to 64", id="workers-many"
            ),
            pytest.param({"max_workers": 2.5}, "max_workers must be a whole number", id="workers-float"),
        ],
    )
    def test_arguments_are_checked_before_reading_the_input(self, server, kwargs, match):
        pulled: list[int] = []

        def rows():
            pulled.append(1)
            yield message(0)

        with pytest.raises(CallbellValidationError, match=match):
            CallbellHook().send_messages(rows(), **kwargs)
        assert (pulled, server.arrivals) == ([], [])

    def test_pool_holds_a_connection_per_worker(self, server):
        hook = CallbellHook()
        hook.send_messages([message(i, delay="0.05") for i in range(40)], max_rps=10_000, max_workers=20)
        adapter = hook.session.get_adapter(server.url)
        assert adapter._pool_maxsize >= 20
        pool = adapter.poolmanager.connection_from_url(server.url)
        assert pool.num_connections <= 20  # every worker reused its connection: none was discarded

    def test_the_pause_waits_with_the_policy_sleep(self, monkeypatch, server):
        """The gate sleeps with the retry policy's injected sleep and clock, so tests never wait."""
        set_connection(monkeypatch, host=server.url)
        waits = Waits()
        hook = CallbellHook(retry_policy=RetryPolicy(sleep=waits.sleep, clock=waits.clock))
        messages = [message(0, status_once="429", retry_after="30"), message(1)]
        assert all("uuid" in r for r in hook.send_messages(messages, max_workers=1))
        assert 30.0 in waits
        assert server.received() == [phone(0), phone(1)]
