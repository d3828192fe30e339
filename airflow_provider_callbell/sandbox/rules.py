"""The rules the sandbox holds requests to, and the account it pretends to be.

Why a module of its own: the sandbox's validation must be written from Callbell's API documentation
alone, independently of :mod:`airflow_provider_callbell.validation`, so that a mistake in the client's
own checks shows up as a disagreement instead of being copied into the test double. Keeping the rules
apart from the server makes that independence easy to see (this module imports nothing of the
provider) and lets them be read in one sitting. The fixed templates, channels and numbers live here
too, so that tests and demos can name them without listing them first.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

JSON = dict[str, Any]

CHANNEL_TYPES = ("whatsapp", "facebook", "instagram", "telegram")
MESSAGE_TYPES = ("text", "image", "document", "audio", "video")
BOT_STATUSES = ("bot_start", "bot_end")
RESPONSE_FIELDS = ("contact", "conversation")

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
