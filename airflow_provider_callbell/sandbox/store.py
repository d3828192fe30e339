"""What the sandbox holds: its models, and one locked store that the routes and the inbox share.

Why it exists: the server's threads write (a send, a customer's answer, an auto-reply) while the web
inbox, the Callbell routes and tests read. One owner behind one lock keeps that safe, and a small read
API keeps it simple: every read returns values that stay valid without the lock (frozen contacts,
tuple snapshots of conversations, copies of records), so no caller ever takes the lock or walks a dict
that another thread is changing. The routes (:mod:`~airflow_provider_callbell.sandbox.api`) and the
inbox both build on this module and never on each other.

A snapshot is a shallow copy: a poll of the inbox with 10,000 messages copies 10,000 references, not
the messages. Messages change in one way only after they are stored: a delete marks them ``deleted``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_callbell.sandbox.rules import DASHBOARD_URL, JSON

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# The delivery steps a healthy message walks through, one per ``status_interval``.
STATUS_STEPS = ("enqueued", "sent", "delivered", "read")

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


def address(channel: str, recipient: str) -> str:
    """How a contact is keyed: a WhatsApp number by its digits (``+31 6 12`` is ``31612``), else as is."""
    if channel == "whatsapp":
        return re.sub(r"\D", "", recipient)
    return recipient.strip()


def iso(timestamp: float) -> str:
    """Callbell's timestamp format: ISO 8601, whole seconds, UTC ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class Account(Protocol):
    """The settings of the account the sandbox pretends to be.

    They are read at every request, never copied, so that a change on a running sandbox (a test
    setting ``sandbox.messages_page_size = 2``) takes effect at once.
    """

    token: str
    user_email: str
    templates: list[JSON]
    channels: list[JSON]
    page_size: int
    messages_page_size: int


@dataclasses.dataclass(frozen=True)
class Knobs:
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
class Message:
    """An accepted ``POST /messages/send``: the body as sent, and whether it will fail delivery."""

    uuid: str
    body: JSON
    received_at: float
    fail_reason: str | None
    deleted: bool = False

    def public(self) -> JSON:
        """The message as ``GET /_sandbox/messages`` shows it: a copy, flagged when deleted."""
        record: JSON = {"uuid": self.uuid, "body": copy.deepcopy(self.body), "received_at": self.received_at}
        if self.deleted:
            record["deleted"] = True
        return record


@dataclasses.dataclass(frozen=True)
class Received:
    """A customer's answer; Callbell lists these without a uuid."""

    text: str
    received_at: float


#: One entry of a conversation, in either direction.
Entry = Message | Received


def status_at(message: Message, when: float, status_interval: float) -> tuple[str, JSON]:
    """The status and its payload at time ``when``: one step per interval, or failed after the first.

    Derived from the time elapsed since sending, so that no background thread moves statuses on.
    """
    step = 3 if status_interval <= 0 else max(0, int((when - message.received_at) / status_interval))
    if message.fail_reason is not None and step >= 1:
        return "failed", {"reason": message.fail_reason}
    return STATUS_STEPS[min(step, 3)], {}


def template_named(templates: Iterable[JSON], template_uuid: Any) -> JSON | None:
    """The template with this uuid, or ``None``."""
    return next((template for template in templates if template.get("uuid") == template_uuid), None)


def sent_text(body: JSON, templates: Iterable[JSON]) -> str | None:
    """The text the customer saw: a template filled with its values, a caption, or none."""
    content = body["content"]
    template = template_named(templates, body.get("template_uuid"))
    if template is None:
        text = content.get("text")
        return text if isinstance(text, str) else None
    values = body.get("template_values") or [content.get("text") or ""]

    def fill(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return values[index] if 0 <= index < len(values) else match.group(0)

    return _PLACEHOLDER.sub(fill, str(template.get("text", "")))


@dataclasses.dataclass(frozen=True)
class Contact:
    """One recipient of one channel type, created by the first message in either direction."""

    uuid: str
    channel: str
    address: str  # phone digits on WhatsApp, the platform id (or a bsuid) elsewhere
    created_at: float
    conversation_uuid: str
    phone_number: str | None
    bsuid: str | None = None

    def public(self) -> JSON:
        """The contact as ``GET /contacts/:uuid`` shows it."""
        return {
            "uuid": self.uuid,
            "name": f"Sandbox {self.phone_number or self.address}",
            "phoneNumber": self.phone_number,
            "avatarUrl": None,
            "createdAt": iso(self.created_at),
            "source": self.channel,
            "href": f"{DASHBOARD_URL}/contacts/{self.uuid}",
            "conversationHref": f"{DASHBOARD_URL}/chat/{self.conversation_uuid}",
            "tags": [],
            "assignedUser": None,
            "customFields": {},
            "bsuid": self.bsuid,
        }


@dataclasses.dataclass(frozen=True)
class Conversation:
    """A contact and a snapshot of its entries, oldest first.

    Entries are only ever appended (a reset forgets whole conversations), so an entry's index is a
    stable key for it.
    """

    contact: Contact
    entries: tuple[Entry, ...]


class Store:
    """Every message, contact, conversation and API request the sandbox saw, and its fault knobs."""

    def __init__(self, knobs: Knobs) -> None:
        self._knobs = knobs
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}
        self._requests: list[JSON] = []
        self._contacts: dict[tuple[str, str], Contact] = {}  # by (channel type, address)
        self._by_uuid: dict[str, Contact] = {}  # the same contacts, in creation order
        self._entries: dict[str, list[Entry]] = {}  # by contact uuid, in arrival order

    # -- knobs -----------------------------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        """The knobs now; one snapshot, so a request sees them all as they were when it began."""
        return self._knobs

    def configure(self, **changes: Any) -> Knobs:
        """Replace some knobs; unknown names raise ``TypeError``, out-of-range values ``ValueError``."""
        with self._lock:
            self._knobs = dataclasses.replace(self._knobs, **changes)
            return self._knobs

    # -- writes ----------------------------------------------------------------------------------

    def add(self, channel: str, recipient: str, entry: Entry, *, by_bsuid: bool = False) -> Contact:
        """Append ``entry`` to the recipient's conversation, creating the contact on first use."""
        key = (channel, f"bsuid:{recipient}" if by_bsuid else address(channel, recipient))
        with self._lock:
            contact = self._contacts.get(key)
            if contact is None:
                phone = None if by_bsuid else (f"+{key[1]}" if channel == "whatsapp" else key[1])
                contact = Contact(
                    uuid=uuid.uuid4().hex,
                    channel=channel,
                    address=key[1],
                    created_at=time.time(),
                    conversation_uuid=uuid.uuid4().hex,
                    phone_number=phone,
                    bsuid=recipient if by_bsuid else None,
                )
                self._contacts[key] = self._by_uuid[contact.uuid] = contact
                self._entries[contact.uuid] = []
            self._append(contact, entry)
        return contact

    def add_to(self, contact: Contact, entry: Entry) -> None:
        """Append ``entry`` to a known contact's conversation; nothing if a reset forgot the contact."""
        with self._lock:
            if self._by_uuid.get(contact.uuid) is contact:
                self._append(contact, entry)

    def _append(self, contact: Contact, entry: Entry) -> None:
        """Call with the lock held."""
        if isinstance(entry, Message):
            self._messages[entry.uuid] = entry
        self._entries[contact.uuid].append(entry)

    def delete_message(self, message_uuid: str) -> bool:
        """Mark a message deleted; ``False`` when there is no such message, or it is deleted already."""
        with self._lock:
            message = self._messages.get(message_uuid)
            if message is None or message.deleted:
                return False
            message.deleted = True
        return True

    def record_request(self, record: JSON) -> None:
        with self._lock:
            self._requests.append(record)

    def clear(self) -> None:
        """Forget every message, contact and request; the knobs stay as they are."""
        with self._lock:
            self._messages.clear()
            self._contacts.clear()
            self._by_uuid.clear()
            self._entries.clear()
            self._requests.clear()

    # -- reads -----------------------------------------------------------------------------------

    def message(self, message_uuid: str) -> Message | None:
        with self._lock:
            return self._messages.get(message_uuid)

    def messages(self) -> list[JSON]:
        """Every accepted message in arrival order, as copies."""
        with self._lock:
            return [message.public() for message in self._messages.values()]

    def requests(self) -> list[JSON]:
        """Every API request recorded, as copies."""
        with self._lock:
            return [dict(record) for record in self._requests]

    def contacts(self) -> list[Contact]:
        """Every contact in creation order."""
        with self._lock:
            return list(self._by_uuid.values())

    def contact(self, contact_uuid: str) -> Contact | None:
        with self._lock:
            return self._by_uuid.get(contact_uuid)

    def contact_at(self, channel: str, recipient: str) -> Contact | None:
        """The contact of ``recipient`` on a channel type, found the way sends key it."""
        with self._lock:
            return self._contacts.get((channel, address(channel, recipient)))

    def conversation(self, contact_uuid: str) -> Conversation | None:
        with self._lock:
            contact = self._by_uuid.get(contact_uuid)
            if contact is None:
                return None
            return Conversation(contact, tuple(self._entries[contact_uuid]))

    def conversations(self) -> list[Conversation]:
        """Every contact's conversation, contacts in creation order."""
        with self._lock:
            return [Conversation(c, tuple(self._entries[c.uuid])) for c in self._by_uuid.values()]
