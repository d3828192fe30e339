"""A local stand-in for the Callbell REST API v1, in the spirit of ``moto`` for AWS.

Why it exists: DAGs, the hook and the operator need something real to talk to in tests and demos,
without a Callbell account, without the internet and without mocking ``requests`` (which would hide
connection handling, retries and paging). The sandbox is a real HTTP server on loopback that answers
like Callbell does, checks every documented rule of ``POST /messages/send`` and can inject the faults
a production client must survive (rate limits, 5xx, dropped connections, slow answers). It keeps one
contact per recipient with its conversation, so that a customer's answer can be simulated
(:meth:`CallbellSandbox.receive`, ``POST /_sandbox/inbound`` or the ``auto_reply`` knob) and read back
through ``GET /contacts/:uuid/messages`` the way a DAG waiting for a reply reads it from Callbell.

Why only the standard library: it must start in milliseconds and, above all, its validation must be
written independently of :mod:`airflow_provider_callbell.validation`, so that a mistake in the
client's own checks shows up as a disagreement instead of being copied into the test double.

This module is the facade and the HTTP layer; the rest is in layers below it, each depending only
downwards: :mod:`~airflow_provider_callbell.sandbox.rules` (what a request must be, the fixed account
data), :mod:`~airflow_provider_callbell.sandbox.answers` (what a route answers),
:mod:`~airflow_provider_callbell.sandbox.store` (the models and the locked store), then side by side and
independent of each other :mod:`~airflow_provider_callbell.sandbox.api` (Callbell's routes and the
faults) and :mod:`~airflow_provider_callbell.sandbox.inbox` (the web inbox).
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_callbell.sandbox.answers import Answer, error, json_object, not_a_json_object, not_found
from airflow_provider_callbell.sandbox.api import CallbellApi
from airflow_provider_callbell.sandbox.guard import Guard, Refused, body_length
from airflow_provider_callbell.sandbox.inbox import Inbox
from airflow_provider_callbell.sandbox.rules import (
    BOT_STATUSES,
    BUSINESS_NUMBER,
    CHANNEL_TYPES,
    DASHBOARD_URL,
    DEFAULT_CHANNELS,
    DEFAULT_TEMPLATES,
    JSON,
    MESSAGE_TYPES,
    RESPONSE_FIELDS,
    InboundValidationError,
    SandboxValidationError,
    SendValidationError,
    validate_inbound,
    validate_send,
)
from airflow_provider_callbell.sandbox.store import STATUS_STEPS, Knobs, Store, status_at

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from email.message import Message
    from types import TracebackType

# What this module offers: the facade, and the names it offered before the sandbox was layered (the
# rules, the account data and the status steps, defined in ``rules`` and ``store``).
__all__ = [
    "BOT_STATUSES",
    "BUSINESS_NUMBER",
    "CHANNEL_TYPES",
    "DASHBOARD_URL",
    "DEFAULT_CHANNELS",
    "DEFAULT_TEMPLATES",
    "MESSAGE_TYPES",
    "RESPONSE_FIELDS",
    "STATUS_STEPS",
    "CallbellSandbox",
    "InboundValidationError",
    "SandboxValidationError",
    "SendValidationError",
    "status_at",
    "validate_inbound",
    "validate_send",
]


class CallbellSandbox:
    """A running fake of the Callbell API v1 on loopback, with inspection and fault injection.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Everything the server saw is
    available as :attr:`messages` and :attr:`requests` (and over HTTP under ``/_sandbox/``).

    Every message creates the recipient's contact on first use; :meth:`receive` (or
    ``POST /_sandbox/inbound``) stores a customer's answer in that conversation, and ``auto_reply``
    answers every outgoing message with a text after ``auto_reply_delay`` seconds (for demos).
    ``messages_page_size`` is the page size of ``GET /contacts/:uuid/messages``.

    It answers only requests whose ``Host`` names it: ``127.0.0.1``, ``localhost`` or ``[::1]`` at its
    port, its own ``host``, or one of ``allowed_hosts`` (``NAME`` at its port, or ``NAME:PORT``), e.g.
    the service name of a docker-compose file when it listens on ``host="0.0.0.0"``. Bodies are capped,
    and a state-changing request from another site's page is refused (see
    :mod:`~airflow_provider_callbell.sandbox.guard`).
    """

    def __init__(
        self,
        token: str = "sandbox-token",
        host: str = "127.0.0.1",
        port: int = 0,
        status_interval: float = 1.0,
        failing_recipients: Mapping[str, str] | None = None,
        rate_limit: int | None = 300,
        latency: float = 0.0,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        flaky_recipients: Mapping[str, int] | None = None,
        seed: int | None = None,
        templates: list[JSON] | None = None,
        channels: list[JSON] | None = None,
        page_size: int = 2,
        user_email: str = "sandbox@example.com",
        auto_reply: str | None = None,
        auto_reply_delay: float = 0.0,
        messages_page_size: int = 20,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        if page_size < 1 or messages_page_size < 1:
            raise ValueError("page_size and messages_page_size must be >= 1")
        self.token = token
        self.host = host
        self.allowed_hosts = (allowed_hosts,) if isinstance(allowed_hosts, str) else tuple(allowed_hosts)
        self.user_email = user_email
        self.page_size = page_size
        self.messages_page_size = messages_page_size
        self.templates = copy.deepcopy(list(DEFAULT_TEMPLATES if templates is None else templates))
        self.channels = copy.deepcopy(list(DEFAULT_CHANNELS if channels is None else channels))
        self._requested_port = port
        self._store = Store(
            Knobs(
                status_interval,
                failing_recipients,
                rate_limit,
                latency,
                error_rate,
                drop_rate,
                flaky_recipients,
                auto_reply,
                auto_reply_delay,
            )
        )
        self._stopping = threading.Event()  # set by stop(): cuts injected latency and auto-replies short
        self._api = CallbellApi(self._store, self, seed=seed, stopping=self._stopping)
        self._inbox = Inbox(self._store, self)
        self._server: _Server | None = None
        self._guard = Guard(host, port, self.allowed_hosts)  # made again once the port is bound
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> CallbellSandbox:
        """Bind the port and serve from a background thread; returns ``self`` for chaining."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self._respond)
        self._guard = Guard(self.host, self.port, self.allowed_hosts)
        # A short poll interval keeps stop() fast: shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"callbell-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close idle keep-alive connections and join every thread; safe to repeat."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # cuts injected latency short
        server.shutdown()
        server.server_close()
        thread.join()
        self._api.cancel_auto_replies()
        self._server = self._thread = None

    def __enter__(self) -> CallbellSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port while running (useful with ``port=0``), else the requested one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def connection_json(self) -> str:
        """The value for ``AIRFLOW_CONN_CALLBELL_DEFAULT`` that points the provider at this sandbox."""
        return json.dumps({"conn_type": "callbell", "host": self.url, "password": self.token})

    # -- inspection ------------------------------------------------------------------------------

    @property
    def messages(self) -> list[JSON]:
        """Every accepted message in arrival order (a copy, deleted ones flagged ``"deleted": True``)."""
        return self._store.messages()

    @property
    def requests(self) -> list[JSON]:
        """Every API request seen: method, path (no query), status answered (or "dropped") and time."""
        return self._store.requests()

    @property
    def contacts(self) -> list[JSON]:
        """Every contact in creation order, as ``GET /contacts/:uuid`` shows it."""
        return [contact.public() for contact in self._store.contacts()]

    def conversation(self, contact_uuid: str) -> list[JSON]:
        """A contact's messages newest first, as ``GET /contacts/:uuid/messages`` lists them (all pages)."""
        return self._api.listing(contact_uuid)

    def receive(self, from_: str, text: str, channel: str = "whatsapp") -> JSON:
        """Store a customer's answer, as if ``from_`` had written ``text`` on ``channel``.

        The contact is created when this is its first message. Returns the message as
        ``GET /contacts/:uuid/messages`` lists it (``status`` ``received``, no ``uuid``).

        :raises InboundValidationError: naming the field, for an unknown channel, a ``from_`` that is
            not a phone number on WhatsApp, or an empty text.
        """
        return self._api.receive(from_, text, channel)

    def reset(self) -> None:
        """Forget messages, contacts, requests and the rate-limit window, e.g. between tests."""
        self._api.reset()

    def configure(self, **knobs: Any) -> None:
        """Change latency, error_rate, drop_rate, rate_limit, status_interval, failing_recipients,
        flaky_recipients (a recipient mapped to n is answered 503 on its first n sends), auto_reply
        or auto_reply_delay live.

        ``unanswered_recipients`` (here only) maps a recipient to n: its first n sends are stored and
        delivered like any other, but answered ``500``, as when Callbell fails after enqueuing. The
        client cannot tell whether such a message went out.

        Unknown names raise ``TypeError`` and out-of-range values ``ValueError``, as in the constructor.
        """
        self._store.configure(**knobs)

    # -- request handling (called from the server's threads) -------------------------------------

    def _respond(self, method: str, target: str, headers: Message, raw: bytes) -> Answer | None:
        """Answer one HTTP request; ``None`` means drop the connection without any answer."""
        parts = urlsplit(target)
        refusal = self._guard.refusal(method, parts.path, headers)
        if refusal is not None:
            return refusal
        if parts.path == "/" or parts.path.startswith(("/_sandbox/inbox/", "/_sandbox/knobs")):
            return self._inbox.route(method, parts.path, parse_qs(parts.query), raw)
        if parts.path.startswith("/_sandbox/"):
            return self._inspect(method, parts.path, raw)
        return self._api.respond(method, parts.path, parse_qs(parts.query), headers.get("Authorization"), raw)

    def _inspect(self, method: str, path: str, raw: bytes) -> Answer:
        """The out-of-band API for tests in other processes; no auth and no faults on purpose."""
        if method == "GET" and path == "/_sandbox/messages":
            return Answer(200, {"messages": self.messages})
        if method == "GET" and path == "/_sandbox/requests":
            return Answer(200, {"requests": self.requests})
        if method == "POST" and path == "/_sandbox/reset":
            self.reset()
            return Answer(200, {"status": "ok"})
        if method == "POST" and path == "/_sandbox/inbound":
            return self._inbound(raw)
        return not_found()

    def _inbound(self, raw: bytes) -> Answer:
        """``POST /_sandbox/inbound`` ``{"from", "text", "channel"}``: a customer answers."""
        body = json_object(raw)
        if body is None:
            return not_a_json_object()
        try:
            message = self.receive(
                body.get("from", ""), body.get("text", ""), body.get("channel", "whatsapp")
            )
        except InboundValidationError as exc:
            return error(422, exc.field, exc.message)
        return Answer(201, {"message": message})


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing only: read the body, ask the sandbox, write the answer (or drop the connection)."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients reuse connections
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid delayed-ACK stalls
    server_version = "CallbellSandbox/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a stderr line per request would cap throughput and clutter test output."""

    def handle_expect_100(self) -> bool:
        """Refuse a body over the cap before inviting the client to send it (``100 Continue``)."""
        try:
            body_length(self.headers)
        except Refused as refused:
            self.close_connection = True
            self._write(refused.answer)
            return False
        return super().handle_expect_100()

    def _dispatch(self) -> None:
        try:
            length = body_length(self.headers)  # before anything else: not a byte over the cap is read
        except Refused as refused:
            self.close_connection = True
            self._write(refused.answer)
            return
        raw = self.rfile.read(length)  # always read it, or the next request on this connection breaks
        answer = self.server.respond(self.command, self.path, self.headers, raw)
        if answer is None:
            self.close_connection = True  # nothing written: the client sees the connection close
            return
        self._write(answer)

    def _write(self, answer: Answer) -> None:
        body = answer.body
        payload = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 204:  # a 204 must carry neither a body nor a Content-Length
            if "Content-Type" not in answer.headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    """A threading server whose ``server_close`` leaves no thread behind.

    ``ThreadingMixIn`` neither joins daemon threads nor wakes handlers waiting on an idle keep-alive
    connection, so a plain ``server_close`` would leave threads (and open sockets) after ``stop()``.
    """

    daemon_threads = True  # a sandbox someone forgot to stop must not block interpreter exit
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], respond: Callable[[str, str, Message, bytes], Answer | None]
    ) -> None:
        self.respond = respond
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._closing = False
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()]
            self._handler_threads.append(thread)
        thread.start()

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            if not self._closing:
                self._connections.add(connection)
                return
        _shutdown(connection)  # accepted just as the server stopped

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def server_close(self) -> None:
        """Close the listening socket, wake idle keep-alive handlers and join every handler thread."""
        super().server_close()
        with self._lock:
            self._closing = True
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            _shutdown(connection)
        for thread in threads:
            thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (or a stop() mid-answer) are normal here, not tracebacks on stderr."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        connection.shutdown(socket.SHUT_RDWR)
