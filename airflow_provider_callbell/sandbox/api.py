"""The Callbell API v1 routes of the sandbox, and the faults a production client must survive.

Why it exists: this is the part of the sandbox that pretends to be Callbell. Every request under
``/v1`` goes through the fault pipeline in a fixed order (a dropped connection, an injected ``503``,
the bearer token, the rate limit, the latency), then to its endpoint, and is recorded for
``sandbox.requests``. Statuses progress with time
(:func:`~airflow_provider_callbell.sandbox.store.status_at`), so no thread moves them on; customers'
answers, typed (:meth:`CallbellApi.receive`) or automatic (the ``auto_reply`` knob), land in the
conversation that ``GET /contacts/:uuid/messages`` lists.

It reads and writes only through the :class:`~airflow_provider_callbell.sandbox.store.Store`, and knows
nothing of the web inbox or of the HTTP server.
"""

from __future__ import annotations

import hmac
import logging
import math
import random
import threading
import time
import unicodedata
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_provider_callbell.sandbox.answers import Answer, error, json_object, not_a_json_object, not_found
from airflow_provider_callbell.sandbox.rules import (
    BUSINESS_NUMBER,
    JSON,
    SendValidationError,
    validate_inbound,
    validate_send,
)
from airflow_provider_callbell.sandbox.store import (
    Message,
    Received,
    iso,
    sent_text,
    status_at,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_callbell.sandbox.store import Account, Contact, Entry, Knobs, Store

log = logging.getLogger("airflow_provider_callbell.sandbox")

#: A request's query string as :func:`urllib.parse.parse_qs` gives it: every value of each name.
Query = dict[str, list[str]]


class CallbellApi:
    """Answers Callbell's routes from the store, with the faults the knobs ask for.

    :param store: where messages, contacts and requests are kept, and the knobs read.
    :param account: the token, the user, the templates, the channels and the page sizes, read live.
    :param seed: seeds the injected drops and errors, so that a run can be repeated.
    :param stopping: set while the sandbox stops: injected latency is cut short and pending
        auto-replies are not stored.
    """

    def __init__(
        self, store: Store, account: Account, *, seed: int | None, stopping: threading.Event
    ) -> None:
        self._store = store
        self._account = account
        self._stopping = stopping
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # for the fault state below, never held while calling the store
        self._window: deque[float] = deque()
        self._refusals: dict[str, int] = {}  # 503s given so far to each flaky recipient
        self._unanswered: dict[str, int] = {}  # 500s given so far after storing, per recipient
        self._timers: list[threading.Timer] = []  # pending auto-replies

    # -- the sandbox's own calls -----------------------------------------------------------------

    def respond(
        self, method: str, path: str, query: Query, authorization: str | None, raw: bytes
    ) -> Answer | None:
        """Answer one request under ``/v1`` and record it; ``None`` means drop the connection."""
        arrived = time.time()
        answer = self._with_faults(method, path, query, authorization, raw)
        self._store.record_request(
            {
                "method": method,
                "path": path,
                "status": "dropped" if answer is None else answer.status,
                "at": arrived,
            }
        )
        return answer

    def receive(self, from_: str, text: str, channel: str) -> JSON:
        """Store a customer's answer and return it as ``GET /contacts/:uuid/messages`` lists it.

        :raises InboundValidationError: naming the field, for an answer that is not one.
        """
        validate_inbound(from_, text, channel)
        entry = Received(text, time.time())
        contact = self._store.add(channel, from_, entry)
        log.info("reply from %s via %s: %s", _printable(from_), channel, _excerpt(text))
        return self._listed(contact, entry)

    def listing(self, contact_uuid: str) -> list[JSON]:
        """A contact's messages newest first, all pages; ``KeyError`` for an unknown contact."""
        conversation = self._store.conversation(contact_uuid)
        if conversation is None:
            raise KeyError(contact_uuid)
        return self._listing(conversation.contact, conversation.entries)

    def reset(self) -> None:
        """Cancel pending auto-replies, then forget the store's contents and the fault counters."""
        self.cancel_auto_replies()
        with self._lock:
            self._window.clear()
            self._refusals.clear()
            self._unanswered.clear()
        self._store.clear()

    def cancel_auto_replies(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for timer in timers:
            timer.join()

    # -- faults ----------------------------------------------------------------------------------

    def _with_faults(
        self, method: str, path: str, query: Query, authorization: str | None, raw: bytes
    ) -> Answer | None:
        """The fault pipeline, in the documented order, then the endpoint itself."""
        knobs = self._store.knobs
        with self._lock:
            dropped = self._rng.random() < knobs.drop_rate
            failed = self._rng.random() < knobs.error_rate
        if dropped:
            return None
        if failed:
            return Answer(503, {"error": "sandbox injected failure"})
        if not self._authorized(authorization):
            return Answer(401, {"error": "Unauthorized"})
        retry_after = self._throttle(knobs.rate_limit)
        if retry_after is not None:
            return Answer(429, {"error": "Too Many Requests"}, {"Retry-After": str(retry_after)})
        if knobs.latency:
            self._stopping.wait(knobs.latency)
        return self._route(method, path, query, raw, knobs)

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self._account.token.encode()
        )

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

    def _count_down(self, given: dict[str, int], recipient: str, due: Mapping[str, int] | None) -> bool:
        """Whether this send to ``recipient`` is one of the ``due`` faults it gets before a normal answer."""
        with self._lock:
            count = given.get(recipient, 0)
            if count >= (due or {}).get(recipient, 0):
                return False
            given[recipient] = count + 1
            return True

    def _schedule_auto_reply(self, contact: Contact, text: str, delay: float) -> None:
        """Answer ``text`` after ``delay`` seconds, from a timer that a stop or a reset cancels."""
        channel, sender = contact.channel, contact.bsuid or contact.address

        def answer() -> None:
            if not self._stopping.is_set():
                self._store.add_to(contact, Received(text, time.time()))
                log.info("auto-reply from %s via %s: %s", _printable(sender), channel, _excerpt(text))

        if delay <= 0:
            answer()
            return
        timer = threading.Timer(delay, answer)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    # -- routes ----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: Query, raw: bytes, knobs: Knobs) -> Answer:
        match method, path.strip("/").split("/"):
            case "POST", ["v1", "messages", "send"]:
                return self._send_message(raw, knobs)
            case "GET", ["v1", "messages", "status", message_uuid]:
                return self._message_status(message_uuid, knobs)
            case "DELETE", ["v1", "messages", message_uuid]:
                if not self._store.delete_message(message_uuid):
                    return not_found("Message not found")
                return Answer(204)
            case "GET", ["v1", "auth", "me"]:
                return Answer(
                    200,
                    {
                        "status": "ok",
                        "user_email": self._account.user_email,
                        "user_name": "Sandbox User",
                        "api_key": self._account.token,
                    },
                )
            case "GET", ["v1", "templates"]:
                return self._page("templates", self._account.templates, query)
            case "GET", ["v1", "channels"]:
                return self._channels(query)
            case "GET", ["v1", "contacts", "phone", number]:
                return self._contact_by_phone(unquote(number), query)
            case "GET", ["v1", "contacts", contact_uuid]:
                contact = self._store.contact(contact_uuid)
                if contact is None:
                    return not_found("Contact not found")
                return Answer(200, {"contact": contact.public()})
            case "GET", ["v1", "contacts", contact_uuid, "messages"]:
                try:
                    listing = self.listing(contact_uuid)
                except KeyError:
                    return not_found("Contact not found")
                return self._page("messages", listing, query, self._account.messages_page_size)
        return not_found()

    def _send_message(self, raw: bytes, knobs: Knobs) -> Answer:
        body = json_object(raw)
        if body is None:
            return not_a_json_object()
        try:
            validate_send(body)
        except SendValidationError as exc:
            return error(422, exc.field, exc.message)
        failing = knobs.failing_recipients or {}
        recipient: str = body["to"] if body.get("to") is not None else body["bsuid"]  # "to" wins
        if self._count_down(self._refusals, recipient, knobs.flaky_recipients):
            return Answer(503, {"error": "sandbox: recipient temporarily unavailable"})
        message = Message(uuid.uuid4().hex, body, time.time(), failing.get(recipient))
        contact = self._store.add(body["from"], recipient, message, by_bsuid=body.get("to") is None)
        public_contact = contact.public()
        _log_message(message, recipient)
        if knobs.auto_reply is not None and message.fail_reason is None:
            self._schedule_auto_reply(contact, knobs.auto_reply, knobs.auto_reply_delay)
        if self._count_down(self._unanswered, recipient, knobs.unanswered_recipients):
            return Answer(500, {"error": "sandbox: failed after enqueuing the message"})
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
        return Answer(200, {"message": answer})

    def _message_status(self, message_uuid: str, knobs: Knobs) -> Answer:
        message = self._store.message(message_uuid)
        if message is None or message.deleted:
            return not_found("Message not found")
        status, payload = status_at(message, time.time(), knobs.status_interval)
        return Answer(
            200, {"message": {"uuid": message.uuid, "status": status, "messageStatusPayload": payload}}
        )

    def _contact_by_phone(self, number: str, query: Query) -> Answer:
        """Callbell looks on the main WhatsApp channel, or on the channel ``channel_uuid`` names."""
        channel_type = "whatsapp"
        if "channel_uuid" in query:
            wanted = query["channel_uuid"][-1]
            channel = next((c for c in self._account.channels if c.get("uuid") == wanted), None)
            if channel is None:
                return not_found("Channel not found")
            channel_type = str(channel.get("type"))
        contact = self._store.contact_at(channel_type, number)
        if contact is None:
            return not_found("Contact not found")
        return Answer(200, {"contact": contact.public()})

    def _channels(self, query: Query) -> Answer:
        channels = self._account.channels
        if "type" in query:
            channels = [channel for channel in channels if channel.get("type") == query["type"][-1]]
        if "active" in query:
            active = query["active"][-1].lower()
            if active not in ("true", "false"):
                return error(400, "active", "must be true or false")
            channels = [channel for channel in channels if bool(channel.get("active")) == (active == "true")]
        return self._page("channels", channels, query)

    def _page(self, key: str, items: list[JSON], query: Query, page_size: int | None = None) -> Answer:
        """Serve one page; small pages by default so that clients' paging loops are exercised."""
        size = page_size or self._account.page_size
        try:
            page = int(query.get("page", ["1"])[-1])
        except ValueError:
            page = 0
        if page < 1:
            return error(400, "page", "must be a positive integer")
        pages = max(1, math.ceil(len(items) / size))
        start = (page - 1) * size
        return Answer(200, {key: items[start : start + size], "meta": {"page": page, "pages": pages}})

    # -- how Callbell lists a conversation -------------------------------------------------------

    def _listing(self, contact: Contact, entries: tuple[Entry, ...]) -> list[JSON]:
        """The contact's messages newest first, without deleted ones."""
        return [
            self._listed(contact, entry)
            for entry in reversed(entries)
            if not (isinstance(entry, Message) and entry.deleted)
        ]

    def _listed(self, contact: Contact, entry: Entry) -> JSON:
        """One entry as Callbell lists it: outgoing ones are ``sent`` with a uuid, answers have none."""
        contact_side = contact.bsuid or contact.address
        if isinstance(entry, Received):
            return {
                "text": entry.text,
                "createdAt": iso(entry.received_at),
                "status": "received",
                "channel": contact.channel,
                "from": contact_side,
                "to": BUSINESS_NUMBER,
            }
        return {
            "text": sent_text(entry.body, self._account.templates),
            "createdAt": iso(entry.received_at),
            "uuid": entry.uuid,
            "status": "sent",
            "channel": contact.channel,
            "from": BUSINESS_NUMBER,
            "to": contact_side,
        }


def _log_message(message: Message, recipient: Any) -> None:
    """One line per accepted message, so a developer watching the CLI sees what their DAG sent."""
    if not log.isEnabledFor(logging.INFO):
        return
    body = message.body
    content = body["content"]
    detail = _excerpt(str(content.get("text" if body["type"] == "text" else "url") or ""))
    kind = f"template {body['type']}" if body.get("template_uuid") is not None else body["type"]
    log.info(
        "%s message %s to %s via %s: %s", kind, message.uuid, _printable(recipient), body["from"], detail
    )


def _excerpt(text: str) -> str:
    """One line of at most 80 characters, for the log, its control characters escaped."""
    detail = _printable(" ".join(text.split()))
    return detail[:77] + "..." if len(detail) > 80 else detail


#: Characters that a terminal acts on or that reorder what it shows: C0/C1 controls (ESC starts the
#: sequences that move the cursor, recolour, retitle the window or write to the clipboard), format
#: characters such as the bidi overrides, line and paragraph separators, and lone surrogates (which
#: would make writing the line fail). The zero-width (non-)joiners stay: emoji sequences need them.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_JOINERS = frozenset("\u200c\u200d")


def _printable(value: object) -> str:
    """``value`` as text a terminal shows as it is: each unprintable character escaped (``\\x1b``).

    Why: the CLI prints what customers and DAGs send, and the developer reads it in a terminal; raw,
    an escape sequence in a message would act on that terminal instead of being shown.
    """
    text = str(value)
    return "".join(
        ascii(char)[1:-1] if unicodedata.category(char) in _UNPRINTABLE and char not in _JOINERS else char
        for char in text
    )
