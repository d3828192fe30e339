"""Every rule of Callbell's ``POST /messages/send``, checked before anything is sent.

One function, :func:`build_send_payload`, turns the arguments that the hook, the operator and (later)
the notifier and bulk sender accept into the exact JSON body Callbell documents, or raises
:class:`~airflow_provider_callbell.exceptions.CallbellValidationError` naming the field at fault and
what it should be. Nothing here touches the network or imports ``requests``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict, get_args
from urllib.parse import urlsplit

from airflow_provider_callbell.exceptions import CallbellValidationError

MessageType = Literal["text", "image", "document", "audio", "video"]
ChannelType = Literal["whatsapp", "facebook", "instagram", "telegram"]
BotStatus = Literal["bot_start", "bot_end"]

MESSAGE_TYPES: tuple[str, ...] = get_args(MessageType)
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)
BOT_STATUSES: tuple[str, ...] = get_args(BotStatus)
RESPONSE_FIELDS = ("contact", "conversation")

#: WhatsApp's (and Telegram's) limit on a text message; the notifier cuts its default summary to it.
TEXT_MAX_CHARS = 4096
METADATA_MAX_PAIRS = 10
METADATA_MAX_KEY_CHARS = 50
METADATA_MAX_VALUE_CHARS = 500

# Digits with an optional leading "+", and the separators people write numbers with. E.164 allows
# at most 15 digits; fewer than 6 is never a reachable WhatsApp number.
_PHONE_RE = re.compile(r"\+?[\d\s\-()]+")
_PHONE_SEPARATORS_RE = re.compile(r"[\s\-()]")
_PHONE_DIGITS = range(6, 16)
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Callbell uuids are 32 hex characters; dashes are tolerated in case a dashed form is ever used.
_UUID_RE = re.compile(r"[0-9A-Fa-f-]{32,36}")


class MessageContent(TypedDict, total=False):
    """The ``content`` object: ``text`` for text messages and captions, ``url`` for media."""

    text: str
    url: str


# The JSON body of ``POST /messages/send``, holding only the fields that were given. The functional
# form is needed because ``from`` is a Python keyword.
SendMessagePayload = TypedDict(
    "SendMessagePayload",
    {
        "to": str,
        "bsuid": str,
        "from": str,
        "type": str,
        "content": MessageContent,
        "channel_uuid": str,
        "template_uuid": str,
        "optin_contact": bool,
        "template_values": list[str],
        "assigned_user": str,
        "team_uuid": str,
        "fields": str,
        "bot_status": str,
        "metadata": dict[str, str],
    },
    total=False,
)


def _fail(field: str, expected: str, got: Any) -> CallbellValidationError:
    return CallbellValidationError(f"{field} must be {expected}, got {got!r}")


def _parse_json(field: str, value: Any, kind: type) -> Any:
    """Accept ``value`` as given, or as the JSON text that Jinja templating turns it into."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _fail(field, f"a JSON {kind.__name__} (or a {kind.__name__})", value) from None
    return value


def _non_empty_str(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "a non-empty string", value)
    return value


def _one_of(field: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _fail(field, f"one of {', '.join(map(repr, allowed))}", value)
    return str(value)


def _http_url(field: str, value: Any, message_type: str) -> str:
    url = _non_empty_str(field, value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(field, f"an http(s) URL for type {message_type!r}", value)
    return url


def validate_uuid(field: str, value: Any, kind: str = "message") -> str:
    """Check a message (or contact) uuid before it goes into a URL path."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise _fail(field, f"a Callbell {kind} uuid (32 hex characters)", value)
    return value


def validate_phone(field: str, value: Any) -> str:
    """A WhatsApp phone number in E.164 form: the separators people paste are dropped, not refused."""
    phone = _non_empty_str(field, value)
    digits = sum(c.isdigit() for c in phone)
    if not _PHONE_RE.fullmatch(phone.strip()) or digits not in _PHONE_DIGITS:
        raise _fail(
            field,
            "a phone number for channel 'whatsapp' (6 to 15 digits, optional leading '+', "
            "e.g. '+31612345678')",
            value,
        )
    return _PHONE_SEPARATORS_RE.sub("", phone)


def _recipient(to: Any, channel: str) -> str:
    recipient = _non_empty_str("to", to)
    if channel != "whatsapp":
        return recipient  # Telegram, Instagram and Facebook ids are opaque identifiers.
    return validate_phone("to", recipient)


def _content(content: Any, message_type: str, is_template: bool) -> MessageContent:
    content = _parse_json("content", content, dict)
    if not isinstance(content, Mapping):
        raise _fail("content", "an object (dict or JSON object)", content)
    is_media = message_type != "text"
    # A template's single placeholder value travels in content.text, whatever the type; outside
    # templates only an image takes a caption.
    allowed = {"text", "url"} if is_media else {"text"}
    if is_media and message_type != "image" and not is_template:
        allowed = {"url"}
    unknown = sorted(set(content) - allowed)
    if unknown:
        raise _fail(
            f"content.{unknown[0]}",
            f"absent for type {message_type!r} (allowed keys: {', '.join(sorted(allowed))})",
            content[unknown[0]],
        )
    result: MessageContent = {}  # url first, then text: the order of Callbell's examples
    if is_media:
        if "url" not in content:
            raise _fail("content.url", f"an http(s) URL for type {message_type!r}", None)
        result["url"] = _http_url("content.url", content["url"], message_type)
    if "text" in content:
        result["text"] = _non_empty_str("content.text", content["text"])
    elif not is_media and not is_template:
        raise _fail("content.text", "a non-empty string for type 'text'", None)
    return result


def _template_values(values: Any) -> list[str]:
    values = _parse_json("template_values", values, list)
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise _fail("template_values", "a list of strings", values)
    return list(values)


def _fields(fields: Any) -> str:
    names = fields.split(",") if isinstance(fields, str) else fields
    if not isinstance(names, (list, tuple)) or not names:
        raise _fail("fields", "a comma-separated string or list of 'contact', 'conversation'", fields)
    cleaned = [name.strip() if isinstance(name, str) else name for name in names]
    for name in cleaned:
        _one_of("fields", name, RESPONSE_FIELDS)
    return ",".join(cleaned)


def _metadata(metadata: Any) -> dict[str, str]:
    metadata = _parse_json("metadata", metadata, dict)
    if not isinstance(metadata, Mapping):
        raise _fail("metadata", "an object of string keys and values", metadata)
    if len(metadata) > METADATA_MAX_PAIRS:
        raise _fail("metadata", f"at most {METADATA_MAX_PAIRS} pairs", f"{len(metadata)} pairs")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 0 < len(key) <= METADATA_MAX_KEY_CHARS:
            raise _fail("metadata key", f"a string of 1 to {METADATA_MAX_KEY_CHARS} characters", key)
        if not isinstance(value, str) or len(value) > METADATA_MAX_VALUE_CHARS:
            raise _fail(
                f"metadata[{key!r}]", f"a string of at most {METADATA_MAX_VALUE_CHARS} characters", value
            )
    return dict(metadata)


def build_send_payload(
    to: str | None = None,
    type: str = "text",
    content: Mapping[str, Any] | str | None = None,
    *,
    from_: str = "whatsapp",
    bsuid: str | None = None,
    channel_uuid: str | None = None,
    template_uuid: str | None = None,
    optin_contact: bool | None = None,
    template_values: Sequence[str] | str | None = None,
    assigned_user: str | None = None,
    team_uuid: str | None = None,
    fields: str | Sequence[str] | None = None,
    bot_status: str | None = None,
    metadata: Mapping[str, str] | str | None = None,
) -> SendMessagePayload:
    """Check one message and return the body Callbell expects, with only the fields given.

    Keys come out in the order of Callbell's documented examples (``to``, ``from``, ``type``,
    ``content``, then the options), so a documented example serialises to the very same JSON.

    :raises CallbellValidationError: naming the first field at fault and what it expects.
    """
    channel = _one_of("from", from_, CHANNEL_TYPES)
    message_type = _one_of("type", type, MESSAGE_TYPES)
    if to is None and bsuid is None:
        raise CallbellValidationError("to or bsuid is required: the recipient of the message")
    if content is None:
        raise _fail("content", "an object such as {'text': '...'} or {'url': 'https://...'}", None)
    if template_uuid is not None:
        _non_empty_str("template_uuid", template_uuid)
        if optin_contact is not True:
            raise _fail(
                "optin_contact",
                "True with template_uuid (you confirm the contact opted in to template messages)",
                optin_contact,
            )
    elif template_values is not None:
        raise _fail("template_uuid", "set when template_values is given", None)
    if optin_contact is not None and not isinstance(optin_contact, bool):
        raise _fail("optin_contact", "True or False", optin_contact)

    body: SendMessagePayload = {}
    if to is not None:
        body["to"] = _recipient(to, channel)
    if bsuid is not None:
        body["bsuid"] = _non_empty_str("bsuid", bsuid)
    body["from"] = channel
    body["type"] = message_type
    body["content"] = _content(content, message_type, is_template=template_uuid is not None)
    if channel_uuid is not None:
        body["channel_uuid"] = _non_empty_str("channel_uuid", channel_uuid)
    if template_uuid is not None:
        body["template_uuid"] = template_uuid
    if optin_contact is not None:
        body["optin_contact"] = optin_contact
    if template_values is not None:
        body["template_values"] = _template_values(template_values)
    if assigned_user is not None:
        if not isinstance(assigned_user, str) or not _EMAIL_RE.fullmatch(assigned_user):
            raise _fail("assigned_user", "the e-mail address of a team member", assigned_user)
        body["assigned_user"] = assigned_user
    if team_uuid is not None:
        body["team_uuid"] = _non_empty_str("team_uuid", team_uuid)
    if fields is not None:
        body["fields"] = _fields(fields)
    if bot_status is not None:
        body["bot_status"] = _one_of("bot_status", bot_status, BOT_STATUSES)
    if metadata is not None:
        body["metadata"] = _metadata(metadata)
    return body


def message_fields(message: Any) -> dict[str, Any]:
    """Turn one message mapping of a bulk send into :func:`build_send_payload`'s keyword arguments.

    JSON data spells the channel ``from`` (Callbell's own name), Python code ``from_``: both are
    accepted, not both at once. ``None`` values count as absent, so that a JSON ``null`` takes the
    default like a missing key does.
    """
    if not isinstance(message, Mapping):
        raise _fail("a message", "an object of message fields such as {'to': ..., 'content': {...}}", message)
    fields = {key: value for key, value in message.items() if value is not None}
    if "from" in fields:
        if "from_" in fields:
            raise _fail("from", "absent when from_ is given (both name the channel)", fields["from"])
        fields["from_"] = fields.pop("from")
    unknown = sorted(set(fields) - set(MESSAGE_FIELDS), key=str)
    if unknown:
        raise CallbellValidationError(
            f"{unknown[0]!r} is not a message field; expected {', '.join(MESSAGE_FIELDS)} (or 'from')"
        )
    return fields


#: The fields of one message: exactly :func:`build_send_payload`'s parameters.
MESSAGE_FIELDS: tuple[str, ...] = tuple(inspect.signature(build_send_payload).parameters)
