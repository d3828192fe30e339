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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hmac
import json
import logging
import math
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

JSON = dict[str, Any]

log = logging.getLogger("airflow_provider_callbell.sandbox")

CHANNEL_TYPES = ("whatsapp", "facebook", "instagram", "telegram")
MESSAGE_TYPES = ("text", "image", "document", "audio", "video")
BOT_STATUSES = ("bot_start", "bot_end")
RESPONSE_FIELDS = ("contact", "conversation")
# The delivery steps a healthy message walks through, one per ``status_interval``.
STATUS_STEPS = ("enqueued", "sent", "delivered", "read")

# Fixed ids, so that tests and demos can name the approved template without listing templates first.
DEFAULT_TEMPLATES: tuple[JSON, ...] = (
    {
        "uuid": "4c6f7e2a9b1d4e8fa3c5b7d9e1f20a4b",
        "title": "welcome",
        "text": "Hello {{1}}",
        "templateType": "text",
        "category": "utility",
        "status": "approved",
        "createdAt": "2024-03-01T09:30:00Z",
    },
    {
        "uuid": "9e2d41b7c0a54f3d8b6e1a2c3d4e5f60",
        "title": "order_shipped",
        "text": "Your order {{1}} is on its way",
        "templateType": "text",
        "category": "utility",
        "status": "pending",
        "createdAt": "2024-04-12T14:05:00Z",
    },
    {
        "uuid": "b7a3c9e1d2f04a6b8c0d1e2f3a4b5c6d",
        "title": "spring_sale",
        "text": "Spring sale: {{1}} off everything",
        "templateType": "text",
        "category": "marketing",
        "status": "rejected",
        "createdAt": "2024-05-20T08:00:00Z",
    },
)
DEFAULT_CHANNELS: tuple[JSON, ...] = (
    {
        "uuid": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "title": "WhatsApp main",
        "type": "whatsapp",
        "main": True,
        "active": True,
    },
    {
        "uuid": "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
        "title": "Telegram bot",
        "type": "telegram",
        "main": False,
        "active": True,
    },
)

#: The sandbox account's own number: ``from`` of the messages it sends, ``to`` of those it receives.
BUSINESS_NUMBER = "31201234567"
#: Where Callbell's dashboard shows contacts and chats; the sandbox only imitates the links.
DASHBOARD_URL = "https://dash.callbell.eu"

_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_WHATSAPP_NUMBER = re.compile(r"\+?\d{6,15}")
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


class SandboxValidationError(ValueError):
    """A request to the sandbox broke a rule; answered as 422 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SendValidationError(SandboxValidationError):
    """A body of ``POST /messages/send`` broke a documented rule."""


class InboundValidationError(SandboxValidationError):
    """A simulated customer answer (``POST /_sandbox/inbound`` or ``receive``) is not one."""


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validate_send(body: JSON) -> None:
    """Check ``body`` against callbell-api.md and raise :class:`SendValidationError` at the first fault.

    Written from the API documentation alone (not from the provider's validation module) so the two
    can disagree, which is the point of testing a client against it.
    """
    if body.get("to") is None and body.get("bsuid") is None:
        raise SendValidationError("to", "either to or bsuid is required")
    for name in ("to", "bsuid", "channel_uuid", "template_uuid", "assigned_user", "team_uuid"):
        value = body.get(name)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise SendValidationError(name, "must be a non-empty string")
    if body.get("from") not in CHANNEL_TYPES:
        raise SendValidationError("from", f"must be one of {', '.join(CHANNEL_TYPES)}")
    kind = body.get("type")
    if kind not in MESSAGE_TYPES:
        raise SendValidationError("type", f"must be one of {', '.join(MESSAGE_TYPES)}")
    content = body.get("content")
    if not isinstance(content, dict):
        raise SendValidationError("content", "must be an object")
    text = content.get("text")
    if text is not None and not isinstance(text, str):
        raise SendValidationError("content.text", "must be a string")
    template = body.get("template_uuid")
    if kind == "text" and template is None and not (text or "").strip():
        raise SendValidationError("content.text", "must be a non-empty string for text messages")
    if kind != "text" and not _is_http_url(content.get("url")):
        raise SendValidationError("content.url", f"must be an http(s) URL for {kind} messages")
    if "optin_contact" in body and not isinstance(body["optin_contact"], bool):
        raise SendValidationError("optin_contact", "must be a boolean")
    if template is not None and body.get("optin_contact") is not True:
        raise SendValidationError("optin_contact", "must be true when template_uuid is given")
    values = body.get("template_values")
    if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        raise SendValidationError("template_values", "must be a list of strings")
    _validate_metadata(body.get("metadata"))
    if "bot_status" in body and body["bot_status"] not in BOT_STATUSES:
        raise SendValidationError("bot_status", f"must be one of {', '.join(BOT_STATUSES)}")
    fields = body.get("fields")
    if fields is not None and not (
        isinstance(fields, str) and all(part.strip() in RESPONSE_FIELDS for part in fields.split(","))
    ):
        raise SendValidationError("fields", "must be a comma-separated subset of contact,conversation")
    to = body.get("to")
    if (
        body["from"] == "whatsapp"
        and to is not None
        and not _WHATSAPP_NUMBER.fullmatch(_PHONE_SEPARATORS.sub("", to))
    ):
        raise SendValidationError(
            "to", "must be a phone number of 6 to 15 digits, optionally with a leading +"
        )


def _validate_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise SendValidationError("metadata", "must be an object")
    if len(metadata) > 10:
        raise SendValidationError("metadata", "must have at most 10 pairs")
    for key, value in metadata.items():
        if len(key) > 50:
            raise SendValidationError("metadata", f"key {key[:20]!r}... is longer than 50 characters")
        if not isinstance(value, str) or len(value) > 500:
            raise SendValidationError("metadata", f"value of {key!r} must be a string of at most 500 chars")


def validate_inbound(from_: Any, text: Any, channel: Any) -> None:
    """Check a simulated customer answer, with the same phone rule as a WhatsApp send."""
    if channel not in CHANNEL_TYPES:
        raise InboundValidationError("channel", f"must be one of {', '.join(CHANNEL_TYPES)}")
    if not (isinstance(from_, str) and from_.strip()):
        raise InboundValidationError("from", "must be a non-empty string")
    if channel == "whatsapp" and not _WHATSAPP_NUMBER.fullmatch(_PHONE_SEPARATORS.sub("", from_)):
        raise InboundValidationError(
            "from", "must be a phone number of 6 to 15 digits, optionally with a leading +"
        )
    if not (isinstance(text, str) and text.strip()):
        raise InboundValidationError("text", "must be a non-empty string")


def _address(channel: str, recipient: str) -> str:
    """How a contact is keyed: a WhatsApp number by its digits (``+31 6 12`` is ``31612``), else as is."""
    if channel == "whatsapp":
        return re.sub(r"\D", "", recipient)
    return recipient.strip()


def _iso(timestamp: float) -> str:
    """Callbell's timestamp format: ISO 8601, whole seconds, UTC ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclasses.dataclass(frozen=True)
class _Knobs:
    """The run-time behaviour; replaced as a whole by ``configure`` so each request sees one snapshot."""

    status_interval: float
    failing_recipients: Mapping[str, str] | None
    rate_limit: int | None
    latency: float
    error_rate: float
    drop_rate: float
    flaky_recipients: Mapping[str, int] | None = None
    auto_reply: str | None = None
    auto_reply_delay: float = 0.0
    unanswered_recipients: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if self.status_interval < 0 or self.latency < 0 or self.auto_reply_delay < 0:
            raise ValueError("status_interval, latency and auto_reply_delay must be >= 0")
        if self.auto_reply is not None and not (isinstance(self.auto_reply, str) and self.auto_reply.strip()):
            raise ValueError("auto_reply must be a non-empty text or None")
        if not (0.0 <= self.error_rate <= 1.0 and 0.0 <= self.drop_rate <= 1.0):
            raise ValueError("error_rate and drop_rate must be between 0 and 1")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 or None")
        object.__setattr__(self, "failing_recipients", dict(self.failing_recipients or {}))
        for name in ("flaky_recipients", "unanswered_recipients"):
            counts = dict(getattr(self, name) or {})
            if not all(isinstance(n, int) and n >= 0 for n in counts.values()):
                raise ValueError(f"{name} must map recipients to whole numbers of sends >= 0")
            object.__setattr__(self, name, counts)


@dataclasses.dataclass
class _Message:
    uuid: str
    body: JSON
    received_at: float
    fail_reason: str | None
    deleted: bool = False

    def public(self) -> JSON:
        record: JSON = {"uuid": self.uuid, "body": copy.deepcopy(self.body), "received_at": self.received_at}
        if self.deleted:
            record["deleted"] = True
        return record


def status_at(message: _Message, when: float, status_interval: float) -> tuple[str, JSON]:
    """The status and its payload at time ``when``: one step per interval, or failed after the first."""
    step = 3 if status_interval <= 0 else max(0, int((when - message.received_at) / status_interval))
    if message.fail_reason is not None and step >= 1:
        return "failed", {"reason": message.fail_reason}
    return STATUS_STEPS[min(step, 3)], {}


@dataclasses.dataclass(frozen=True)
class _Received:
    """A customer's answer; Callbell lists these without a uuid."""

    text: str
    received_at: float


@dataclasses.dataclass
class _Contact:
    """One recipient of one channel type, created by the first message in either direction."""

    uuid: str
    channel: str
    address: str  # phone digits on WhatsApp, the platform id (or a bsuid) elsewhere
    created_at: float
    conversation_uuid: str
    phone_number: str | None
    bsuid: str | None = None
    # Oldest first, in arrival order: createdAt has whole seconds, so order decides ties.
    entries: list[_Message | _Received] = dataclasses.field(default_factory=list)

    def public(self) -> JSON:
        return {
            "uuid": self.uuid,
            "name": f"Sandbox {self.phone_number or self.address}",
            "phoneNumber": self.phone_number,
            "avatarUrl": None,
            "createdAt": _iso(self.created_at),
            "source": self.channel,
            "href": f"{DASHBOARD_URL}/contacts/{self.uuid}",
            "conversationHref": f"{DASHBOARD_URL}/chat/{self.conversation_uuid}",
            "tags": [],
            "assignedUser": None,
            "customFields": {},
            "bsuid": self.bsuid,
        }


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: int
    body: JSON | bytes | None = None  # bytes are sent as they are, with the Content-Type in headers
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def _error(status: int, field: str, message: str) -> _Answer:
    return _Answer(status, {"error": {"field": field, "message": message}})


class CallbellSandbox:
    """A running fake of the Callbell API v1 on loopback, with inspection and fault injection.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Everything the server saw is
    available as :attr:`messages` and :attr:`requests` (and over HTTP under ``/_sandbox/``).

    Every message creates the recipient's contact on first use; :meth:`receive` (or
    ``POST /_sandbox/inbound``) stores a customer's answer in that conversation, and ``auto_reply``
    answers every outgoing message with a text after ``auto_reply_delay`` seconds (for demos).
    ``messages_page_size`` is the page size of ``GET /contacts/:uuid/messages``.
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
    ) -> None:
        if page_size < 1 or messages_page_size < 1:
            raise ValueError("page_size and messages_page_size must be >= 1")
        self.token = token
        self.host = host
        self.user_email = user_email
        self.page_size = page_size
        self.messages_page_size = messages_page_size
        self.templates = copy.deepcopy(list(DEFAULT_TEMPLATES if templates is None else templates))
        self.channels = copy.deepcopy(list(DEFAULT_CHANNELS if channels is None else channels))
        self._requested_port = port
        self._knobs = _Knobs(
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
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._messages: dict[str, _Message] = {}
        self._requests: list[JSON] = []
        self._window: deque[float] = deque()
        self._refusals: dict[str, int] = {}  # 503s given so far to each flaky recipient
        self._unanswered: dict[str, int] = {}  # 500s given so far after storing, per recipient
        self._contacts: dict[tuple[str, str], _Contact] = {}  # by (channel type, address)
        self._timers: list[threading.Timer] = []  # pending auto-replies
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> CallbellSandbox:
        """Bind the port and serve from a background thread; returns ``self`` for chaining."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
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
        self._cancel_auto_replies()
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
        with self._lock:
            return [message.public() for message in self._messages.values()]

    @property
    def requests(self) -> list[JSON]:
        """Every API request seen: method, path (no query), status answered (or "dropped") and time."""
        with self._lock:
            return [dict(record) for record in self._requests]

    @property
    def contacts(self) -> list[JSON]:
        """Every contact in creation order, as ``GET /contacts/:uuid`` shows it."""
        with self._lock:
            return [contact.public() for contact in self._contacts.values()]

    def conversation(self, contact_uuid: str) -> list[JSON]:
        """A contact's messages newest first, as ``GET /contacts/:uuid/messages`` lists them (all pages)."""
        with self._lock:
            contact = self._contact_by_uuid(contact_uuid)
            if contact is None:
                raise KeyError(contact_uuid)
            return self._listing(contact)

    def receive(self, from_: str, text: str, channel: str = "whatsapp") -> JSON:
        """Store a customer's answer, as if ``from_`` had written ``text`` on ``channel``.

        The contact is created when this is its first message. Returns the message as
        ``GET /contacts/:uuid/messages`` lists it (``status`` ``received``, no ``uuid``).

        :raises InboundValidationError: naming the field, for an unknown channel, a ``from_`` that is
            not a phone number on WhatsApp, or an empty text.
        """
        validate_inbound(from_, text, channel)
        with self._lock:
            contact = self._contact_for(channel, from_)
            entry = _Received(text, time.time())
            contact.entries.append(entry)
            listed = self._listed(contact, entry)
        log.info("reply from %s via %s: %s", from_, channel, _excerpt(text))
        return listed

    def reset(self) -> None:
        """Forget messages, contacts, requests and the rate-limit window, e.g. between tests."""
        self._cancel_auto_replies()
        with self._lock:
            self._messages.clear()
            self._contacts.clear()
            self._requests.clear()
            self._window.clear()
            self._refusals.clear()
            self._unanswered.clear()

    def configure(self, **knobs: Any) -> None:
        """Change latency, error_rate, drop_rate, rate_limit, status_interval, failing_recipients,
        flaky_recipients (a recipient mapped to n is answered 503 on its first n sends), auto_reply
        or auto_reply_delay live.

        ``unanswered_recipients`` (here only) maps a recipient to n: its first n sends are stored and
        delivered like any other, but answered ``500``, as when Callbell fails after enqueuing. The
        client cannot tell whether such a message went out.

        Unknown names raise ``TypeError`` and out-of-range values ``ValueError``, as in the constructor.
        """
        self._knobs = dataclasses.replace(self._knobs, **knobs)

    # -- request handling (called from the server's threads) -------------------------------------

    def _respond(self, method: str, target: str, authorization: str | None, raw: bytes) -> _Answer | None:
        """Answer one HTTP request; ``None`` means drop the connection without any answer."""
        parts = urlsplit(target)
        if parts.path == "/" or parts.path.startswith(("/_sandbox/inbox/", "/_sandbox/knobs")):
            from airflow_provider_callbell.sandbox import inbox  # imports this module: not at the top

            return inbox.route(self, method, parts.path, parse_qs(parts.query), raw)
        if parts.path.startswith("/_sandbox/"):
            return self._inspect(method, parts.path, raw)
        arrived = time.time()
        answer = self._api(method, parts.path, parse_qs(parts.query), authorization, raw)
        with self._lock:
            self._requests.append(
                {
                    "method": method,
                    "path": parts.path,
                    "status": "dropped" if answer is None else answer.status,
                    "at": arrived,
                }
            )
        return answer

    def _inspect(self, method: str, path: str, raw: bytes) -> _Answer:
        """The out-of-band API for tests in other processes; no auth and no faults on purpose."""
        if method == "GET" and path == "/_sandbox/messages":
            return _Answer(200, {"messages": self.messages})
        if method == "GET" and path == "/_sandbox/requests":
            return _Answer(200, {"requests": self.requests})
        if method == "POST" and path == "/_sandbox/reset":
            self.reset()
            return _Answer(200, {"status": "ok"})
        if method == "POST" and path == "/_sandbox/inbound":
            return self._inbound(raw)
        return _Answer(404, {"error": "Not Found"})

    def _inbound(self, raw: bytes) -> _Answer:
        """``POST /_sandbox/inbound`` ``{"from", "text", "channel"}``: a customer answers."""
        body = _json_object(raw)
        if body is None:
            return _Answer(400, {"error": "the request body must be a JSON object"})
        try:
            message = self.receive(
                body.get("from", ""), body.get("text", ""), body.get("channel", "whatsapp")
            )
        except InboundValidationError as exc:
            return _error(422, exc.field, exc.message)
        return _Answer(201, {"message": message})

    def _api(
        self, method: str, path: str, query: dict[str, list[str]], authorization: str | None, raw: bytes
    ) -> _Answer | None:
        """The fault pipeline, in the documented order, then the endpoint itself."""
        knobs = self._knobs
        with self._lock:
            dropped = self._rng.random() < knobs.drop_rate
            failed = self._rng.random() < knobs.error_rate
        if dropped:
            return None
        if failed:
            return _Answer(503, {"error": "sandbox injected failure"})
        if not self._authorized(authorization):
            return _Answer(401, {"error": "Unauthorized"})
        retry_after = self._throttle(knobs.rate_limit)
        if retry_after is not None:
            return _Answer(429, {"error": "Too Many Requests"}, {"Retry-After": str(retry_after)})
        if knobs.latency:
            self._stopping.wait(knobs.latency)
        return self._route(method, path, query, raw, knobs)

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())

    def _throttle(self, rate_limit: int | None) -> int | None:
        """Count the request in a sliding one-second window; return Retry-After seconds when over."""
        if rate_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= rate_limit:
                return max(1, math.ceil(self._window[0] + 1.0 - now))
            self._window.append(now)
        return None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, knobs: _Knobs
    ) -> _Answer:
        match method, path.strip("/").split("/"):
            case "POST", ["v1", "messages", "send"]:
                return self._send_message(raw, knobs)
            case "GET", ["v1", "messages", "status", message_uuid]:
                return self._message_status(message_uuid, knobs)
            case "DELETE", ["v1", "messages", message_uuid]:
                return self._delete_message(message_uuid)
            case "GET", ["v1", "auth", "me"]:
                return _Answer(
                    200,
                    {
                        "status": "ok",
                        "user_email": self.user_email,
                        "user_name": "Sandbox User",
                        "api_key": self.token,
                    },
                )
            case "GET", ["v1", "templates"]:
                return self._page("templates", self.templates, query)
            case "GET", ["v1", "channels"]:
                return self._channels(query)
            case "GET", ["v1", "contacts", "phone", number]:
                return self._contact_by_phone(unquote(number), query)
            case "GET", ["v1", "contacts", contact_uuid]:
                return self._get_contact(contact_uuid)
            case "GET", ["v1", "contacts", contact_uuid, "messages"]:
                return self._contact_messages(contact_uuid, query)
        return _Answer(404, {"error": "Not Found"})

    def _send_message(self, raw: bytes, knobs: _Knobs) -> _Answer:
        body = _json_object(raw)
        if body is None:
            return _Answer(400, {"error": "the request body must be a JSON object"})
        try:
            validate_send(body)
        except SendValidationError as exc:
            return _error(422, exc.field, exc.message)
        failing = knobs.failing_recipients or {}
        recipient: str = body["to"] if body.get("to") is not None else body["bsuid"]  # "to" wins
        if _count_down(self._refusals, recipient, knobs.flaky_recipients, self._lock):
            return _Answer(503, {"error": "sandbox: recipient temporarily unavailable"})
        message = _Message(uuid.uuid4().hex, body, time.time(), failing.get(recipient))
        with self._lock:
            self._messages[message.uuid] = message
            contact = self._contact_for(body["from"], recipient, by_bsuid=body.get("to") is None)
            contact.entries.append(message)
            public_contact = contact.public()
        _log_message(message, recipient)
        if knobs.auto_reply is not None and message.fail_reason is None:
            self._schedule_auto_reply(contact, knobs.auto_reply, knobs.auto_reply_delay)
        if _count_down(self._unanswered, recipient, knobs.unanswered_recipients, self._lock):
            return _Answer(500, {"error": "sandbox: failed after enqueuing the message"})
        answer: JSON = {
            "uuid": message.uuid,
            "status": "enqueued",
        }  # docs: fields are "returned in the message"
        wanted = {part.strip() for part in body.get("fields", "").split(",")}
        if "contact" in wanted:
            answer["contact"] = public_contact
        if "conversation" in wanted:
            answer["conversation"] = {
                "uuid": contact.conversation_uuid,
                "source": body["from"],
                "href": public_contact["conversationHref"],
            }
        return _Answer(200, {"message": answer})

    # -- contacts and their conversations ---------------------------------------------------------

    def _contact_for(self, channel: str, recipient: str, *, by_bsuid: bool = False) -> _Contact:
        """The recipient's contact, created on first use; call with the lock held."""
        key = (channel, f"bsuid:{recipient}" if by_bsuid else _address(channel, recipient))
        contact = self._contacts.get(key)
        if contact is None:
            phone = None if by_bsuid else (f"+{key[1]}" if channel == "whatsapp" else key[1])
            contact = _Contact(
                uuid=uuid.uuid4().hex,
                channel=channel,
                address=key[1],
                created_at=time.time(),
                conversation_uuid=uuid.uuid4().hex,
                phone_number=phone,
                bsuid=recipient if by_bsuid else None,
            )
            self._contacts[key] = contact
        return contact

    def _contact_by_uuid(self, contact_uuid: str) -> _Contact | None:
        """Call with the lock held."""
        return next((c for c in self._contacts.values() if c.uuid == contact_uuid), None)

    def _listed(self, contact: _Contact, entry: _Message | _Received) -> JSON:
        """One entry as Callbell lists it: outgoing ones are ``sent`` with a uuid, answers have none."""
        contact_side = contact.bsuid or contact.address
        if isinstance(entry, _Received):
            return {
                "text": entry.text,
                "createdAt": _iso(entry.received_at),
                "status": "received",
                "channel": contact.channel,
                "from": contact_side,
                "to": BUSINESS_NUMBER,
            }
        return {
            "text": self._sent_text(entry.body),
            "createdAt": _iso(entry.received_at),
            "uuid": entry.uuid,
            "status": "sent",
            "channel": contact.channel,
            "from": BUSINESS_NUMBER,
            "to": contact_side,
        }

    def _listing(self, contact: _Contact) -> list[JSON]:
        """The contact's messages newest first, without deleted ones; call with the lock held."""
        return [
            self._listed(contact, entry)
            for entry in reversed(contact.entries)
            if not (isinstance(entry, _Message) and entry.deleted)
        ]

    def _sent_text(self, body: JSON) -> str | None:
        """The text the customer saw: a template filled with its values, a caption, or none."""
        content = body["content"]
        template = next((t for t in self.templates if t.get("uuid") == body.get("template_uuid")), None)
        if template is None:
            text = content.get("text")
            return text if isinstance(text, str) else None
        values = body.get("template_values") or [content.get("text") or ""]

        def fill(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            return values[index] if 0 <= index < len(values) else match.group(0)

        return _PLACEHOLDER.sub(fill, str(template.get("text", "")))

    def _contact_by_phone(self, number: str, query: dict[str, list[str]]) -> _Answer:
        """Callbell looks on the main WhatsApp channel, or on the channel ``channel_uuid`` names."""
        channel_type = "whatsapp"
        if "channel_uuid" in query:
            wanted = query["channel_uuid"][-1]
            channel = next((c for c in self.channels if c.get("uuid") == wanted), None)
            if channel is None:
                return _Answer(404, {"error": "Channel not found"})
            channel_type = str(channel.get("type"))
        with self._lock:
            contact = self._contacts.get((channel_type, _address(channel_type, number)))
            if contact is None:
                return _Answer(404, {"error": "Contact not found"})
            return _Answer(200, {"contact": contact.public()})

    def _get_contact(self, contact_uuid: str) -> _Answer:
        with self._lock:
            contact = self._contact_by_uuid(contact_uuid)
            if contact is None:
                return _Answer(404, {"error": "Contact not found"})
            return _Answer(200, {"contact": contact.public()})

    def _contact_messages(self, contact_uuid: str, query: dict[str, list[str]]) -> _Answer:
        with self._lock:
            contact = self._contact_by_uuid(contact_uuid)
            if contact is None:
                return _Answer(404, {"error": "Contact not found"})
            listing = self._listing(contact)
        return self._page("messages", listing, query, self.messages_page_size)

    def _schedule_auto_reply(self, contact: _Contact, text: str, delay: float) -> None:
        """Answer ``text`` after ``delay`` seconds, from a timer that :meth:`stop` cancels."""
        channel, sender = contact.channel, contact.bsuid or contact.address

        def answer() -> None:
            if not self._stopping.is_set():
                with self._lock:
                    contact.entries.append(_Received(text, time.time()))
                log.info("auto-reply from %s via %s: %s", sender, channel, _excerpt(text))

        if delay <= 0:
            answer()
            return
        timer = threading.Timer(delay, answer)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def _cancel_auto_replies(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for timer in timers:
            timer.join()

    def _message_status(self, message_uuid: str, knobs: _Knobs) -> _Answer:
        """Derive the status from the time elapsed since sending, so no background thread is needed."""
        with self._lock:
            message = self._messages.get(message_uuid)
        if message is None or message.deleted:
            return _Answer(404, {"error": "Message not found"})
        status, payload = status_at(message, time.time(), knobs.status_interval)
        return _Answer(
            200, {"message": {"uuid": message.uuid, "status": status, "messageStatusPayload": payload}}
        )

    def _delete_message(self, message_uuid: str) -> _Answer:
        with self._lock:
            message = self._messages.get(message_uuid)
            if message is None or message.deleted:
                return _Answer(404, {"error": "Message not found"})
            message.deleted = True
        return _Answer(204)

    def _channels(self, query: dict[str, list[str]]) -> _Answer:
        channels = self.channels
        if "type" in query:
            channels = [channel for channel in channels if channel.get("type") == query["type"][-1]]
        if "active" in query:
            active = query["active"][-1].lower()
            if active not in ("true", "false"):
                return _error(400, "active", "must be true or false")
            channels = [channel for channel in channels if bool(channel.get("active")) == (active == "true")]
        return self._page("channels", channels, query)

    def _page(
        self, key: str, items: list[JSON], query: dict[str, list[str]], page_size: int | None = None
    ) -> _Answer:
        """Serve one page; small pages by default so that clients' paging loops are exercised."""
        size = page_size or self.page_size
        try:
            page = int(query.get("page", ["1"])[-1])
        except ValueError:
            page = 0
        if page < 1:
            return _error(400, "page", "must be a positive integer")
        pages = max(1, math.ceil(len(items) / size))
        start = (page - 1) * size
        return _Answer(200, {key: items[start : start + size], "meta": {"page": page, "pages": pages}})


def _json_object(raw: bytes) -> JSON | None:
    """A request body that is a JSON object, else ``None``."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _count_down(
    given: dict[str, int], recipient: str, due: Mapping[str, int] | None, lock: threading.Lock
) -> bool:
    """Whether this send to ``recipient`` is one of the ``due`` faults it gets before a normal answer."""
    with lock:
        count = given.get(recipient, 0)
        if count >= (due or {}).get(recipient, 0):
            return False
        given[recipient] = count + 1
        return True


def _log_message(message: _Message, recipient: Any) -> None:
    """One line per accepted message, so a developer watching the CLI sees what their DAG sent."""
    if not log.isEnabledFor(logging.INFO):
        return
    body = message.body
    content = body["content"]
    detail = _excerpt(str(content.get("text" if body["type"] == "text" else "url") or ""))
    kind = f"template {body['type']}" if body.get("template_uuid") is not None else body["type"]
    log.info("%s message %s to %s via %s: %s", kind, message.uuid, recipient, body["from"], detail)


def _excerpt(text: str) -> str:
    """One line of at most 80 characters, for the log."""
    detail = " ".join(text.split())
    return detail[:77] + "..." if len(detail) > 80 else detail


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

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(_error(400, "Content-Length", "must be a non-negative integer"))
            return
        raw = self.rfile.read(length)  # always read it, or the next request on this connection breaks
        answer = self.server.sandbox._respond(self.command, self.path, self.headers.get("Authorization"), raw)
        if answer is None:
            self.close_connection = True  # nothing written: the client sees the connection close
            return
        self._write(answer)

    def _write(self, answer: _Answer) -> None:
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

    def __init__(self, address: tuple[str, int], sandbox: CallbellSandbox) -> None:
        self.sandbox = sandbox
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
