"""Every rule of Callbell's ``POST /messages/send``, checked before anything is sent.

One description of a message, :class:`MessageFields` (the recipient ``to`` over
:class:`~airflow_provider_callbell.fields.MessageOptions`), names its 14 fields with their types and
meaning; the field tuple :data:`~airflow_provider_callbell.fields.MESSAGE_FIELDS`, the hook's and the
validator's signatures, the parse-time checks of the operators and the notifier, and the field table
of the docs all derive from it. One function, :func:`build_send_payload`, turns a message into the exact JSON body Callbell
documents, or raises :class:`~airflow_provider_callbell.exceptions.CallbellValidationError` naming
the field at fault, what it should be and, for the common mistakes, the fix.

Any Python value in any field gives that error and nothing else (deep nesting, hostile objects, lone
surrogates, megabyte strings included), and every check takes time linear in its input, lengths
first: a value too long is refused before it is parsed or matched. Nothing here touches the network
or imports ``requests``. The operators, the sensors and the notifier import this module when they
are built (a DAG file's literal fields are checked then), not when their module is imported.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, TypedDict, get_args
from urllib.parse import urlsplit

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.fields import MESSAGE_FIELDS as MESSAGE_FIELDS
from airflow_provider_callbell.fields import BotStatus as BotStatus
from airflow_provider_callbell.fields import ChannelType as ChannelType
from airflow_provider_callbell.fields import MessageContent as MessageContent
from airflow_provider_callbell.fields import MessageOptions as MessageOptions
from airflow_provider_callbell.fields import MessageType as MessageType
from airflow_provider_callbell.fields import ResponseField as ResponseField

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Unpack

MESSAGE_TYPES: tuple[str, ...] = get_args(MessageType)
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)
BOT_STATUSES: tuple[str, ...] = get_args(BotStatus)
RESPONSE_FIELDS: tuple[str, ...] = get_args(ResponseField)
DEFAULT_CHANNEL = "whatsapp"
DEFAULT_TYPE = "text"

#: WhatsApp's and Telegram's limit on a text message, the largest of the four channels; the
#: notifier cuts its default summary to it.
TEXT_MAX_CHARS = 4096
URL_MAX_CHARS = 8192  # a signed storage URL can be long; none is this long
ID_MAX_CHARS = 256  # uuids, bsuids and platform ids are far shorter
EMAIL_MAX_CHARS = 254  # RFC 5321's limit on a forward path
PHONE_MAX_CHARS = 64  # 15 digits with generous separators
JSON_MAX_CHARS = 65_536  # a JSON field (content, metadata, template_values) as text
TEMPLATE_VALUES_MAX = 100
METADATA_MAX_PAIRS = 10
METADATA_MAX_KEY_CHARS = 50
METADATA_MAX_VALUE_CHARS = 500
#: The range of a bulk send's ``max_rps``: Callbell allows 300 per account; above 10,000 is a typo.
MIN_RPS = 0.1
MAX_RPS = 10_000.0
#: How much of an offending value an error message shows.
SHOWN_CHARS = 80

# E.164: "+", a country code (never starting with 0) and the number, at most 15 digits in all; fewer
# than 6 is never a reachable WhatsApp number. ASCII digits only: [0-9], not \d.
_INTERNATIONAL_NUMBER = re.compile(r"\+[1-9][0-9]{5,14}")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
#: A Callbell uuid: 32 hex digits (``adf3d1216d4c4dcd908199d6700f2381`` in every example of Callbell's
#: reference), or the same in the dashed 8-4-4-4-12 form. The one uuid check: the hook's arguments
#: (:func:`validate_uuid`) and Callbell's answers (``answers.py``) use it, so a uuid taken from an
#: answer can always be asked about again.
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a uuid as Callbell writes them."""
    return isinstance(value, str) and UUID_PATTERN.fullmatch(value) is not None


class MessageFields(MessageOptions, total=False):
    """One message, as the hook, the operators, the notifier and a bulk send take it.

    ``None`` means absent. The recipient ``to`` stands apart from
    :class:`~airflow_provider_callbell.fields.MessageOptions` only so that
    ``CallbellHook.send_message`` can take it by position.
    """

    to: Annotated[
        str | None, "phone number (WhatsApp, ``+`` and country code) or platform id of the recipient"
    ]


# The JSON body of ``POST /messages/send``, holding only the fields that were given, in the order of
# Callbell's documented examples. The functional form is needed because ``from`` is a Python keyword.
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


# -- Showing values in errors ----------------------------------------------------------------------


class _Shown(reprlib.Repr):
    """``reprlib`` that never sorts: showing a value costs what is shown, not the value's size."""

    def repr_dict(self, x: Any, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in islice(x.items(), self.maxdict)
        ]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"

    def repr_set(self, x: Any, level: int) -> str:
        if level <= 0:
            return "{...}"
        items = [self.repr1(item, level - 1) for item in islice(x, self.maxset)]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxset else "") + "}" if items else "set()"

    repr_frozenset = repr_set


_SHOWN = _Shown()
_SHOWN.maxstring = _SHOWN.maxother = SHOWN_CHARS
_SHOWN.maxlevel = 2
_SHOWN.maxdict = _SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxset = _SHOWN.maxfrozenset = 4


def shown(value: Any) -> str:
    """The value as every validation error shows it: its ``repr``, cut to about 80 characters.

    Safe for any value: deep nesting, megabyte strings, huge integers, objects whose ``repr`` raises.
    """
    try:
        text = _SHOWN.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= SHOWN_CHARS + 8 else text[:SHOWN_CHARS] + "..."


class _Absent:
    """Marks an error about a missing value: the message then has no ``got ...`` part."""


_ABSENT = _Absent()


class _Said(NamedTuple):
    """A description of a value, shown as is (``12 pairs``) instead of as a ``repr``."""

    text: str


def _fail(
    field: str, expected: str, got: Any = _ABSENT, *, hint: str | None = None
) -> CallbellValidationError:
    """``<field> must be <expected>, got <value>; <hint>``: what was wrong, what is right, the fix."""
    message = f"{field} must be {expected}"
    if not isinstance(got, _Absent):
        message += f", got {got.text if isinstance(got, _Said) else shown(got)}"
    return CallbellValidationError(f"{message}; {hint}" if hint else message)


def _did_you_mean(word: str, choices: Collection[str]) -> str | None:
    """``did you mean 'text'?`` for a near miss of one of ``choices``, else ``None``."""
    if len(word) > 40:  # difflib is quadratic; a near miss is short
        return None
    if word.strip().lower() in choices:
        return f"did you mean {word.strip().lower()!r}?"
    import difflib  # only on the error path

    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


# -- Values by kind --------------------------------------------------------------------------------


def _as_str(value: Any) -> str | None:
    """``value`` as an exact ``str`` (a subclass's own methods are never called), else ``None``."""
    return str.__str__(value) if issubclass(type(value), str) else None


def _is_list(value: Any) -> bool:
    return issubclass(type(value), (list, tuple))


def _string(
    field: str, value: Any, max_chars: int, expected: str = "a non-empty string", *, blank: bool = False
) -> str:
    """A string of 1 (0 if ``blank``) to ``max_chars`` characters that encodes to UTF-8 (no lone surrogates)."""
    text = _as_str(value)
    if text is None or not (blank or text.strip()):
        raise _fail(field, expected, value)
    if len(text) > max_chars:
        raise _fail(field, f"{expected} of at most {max_chars} characters", _Said(f"{len(text)} characters"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(field, f"{expected} of valid Unicode (no lone surrogates)", value) from None
    return text


def _one_of(field: str, value: Any, allowed: Sequence[str]) -> str:
    text = _as_str(value)
    if text is None or text not in allowed:
        hint = _did_you_mean(text, allowed) if text is not None else None
        raise _fail(field, f"one of {', '.join(map(repr, allowed))}", value, hint=hint)
    return text


def _parse_json(field: str, value: Any, kind: Literal["object", "list"], example: str) -> Any:
    """Accept ``value`` as given, or as the JSON text that Jinja templating turns it into."""
    text = _as_str(value)
    if text is None:
        return value
    python = "dict" if kind == "object" else "list"
    if len(text) > JSON_MAX_CHARS:
        raise _fail(
            field,
            f"a {python} or at most {JSON_MAX_CHARS} characters of JSON",
            _Said(f"{len(text)} characters"),
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _fail(
            field, f"a {python} or a JSON {kind} such as {example}", value, hint=_plain_text_hint(field, text)
        ) from None


def _plain_text_hint(field: str, text: str) -> str | None:
    """For plain text where JSON was expected: the JSON it was probably meant to be."""
    cut = text if len(text) <= 40 else text[:40] + "..."
    if text.lstrip()[:1] in ("{", "["):
        return None  # meant as JSON, and broken
    if field == "content":
        return f"to send it as a text message use {{'text': {cut!r}}}"
    if field == "template_values":
        return f"for one placeholder value use [{cut!r}]"
    return None


def validate_uuid(field: str, value: Any, kind: str = "message") -> str:
    """Check a message (or contact) uuid before it goes into a URL path."""
    text = _as_str(value)
    if text is None or not is_uuid(text):
        raise _fail(field, f"a Callbell {kind} uuid (32 hex digits, or dashed 8-4-4-4-12)", value)
    return text


# -- One check per field ---------------------------------------------------------------------------


class _Context(NamedTuple):
    """What a field's rule depends on; ``None`` where it is not known yet (templated, at parse time)."""

    channel: str | None
    message_type: str | None
    is_template: bool


_PHONE_EXPECTED = (
    "a phone number in international format for channel 'whatsapp': '+', the country code and the "
    "number, 6 to 15 digits 0-9 (e.g. '+31612345678')"
)


def _phone_hint(number: str) -> str | None:
    """The fix for a WhatsApp number written another way, from ``number`` without its separators."""
    if any(not c.isascii() and c.isdecimal() for c in number):
        ascii_number = "".join(str(int(c)) if c.isdecimal() else c for c in number)
        fixed = _INTERNATIONAL_NUMBER.fullmatch(ascii_number) and ascii_number
        return "write the digits as 0-9" + (f": did you mean {fixed!r}?" if fixed else "")
    digits = number.removeprefix("+")
    if not digits.isascii() or not digits.isdecimal():
        return None
    if digits.startswith("00") and _INTERNATIONAL_NUMBER.fullmatch("+" + digits[2:]):
        return f"write '+' instead of the international call prefix 00: did you mean {'+' + digits[2:]!r}?"
    if digits.startswith("0") and not number.startswith("+"):
        return (
            f"{number!r} is a national number: put the country code in place of the leading 0, "
            f"e.g. '+31 {digits[1:]}' for the Netherlands"
        )
    if not number.startswith("+") and _INTERNATIONAL_NUMBER.fullmatch("+" + digits):
        return f"did you mean {'+' + digits!r}? A number without '+' cannot be told from a national one"
    return None


def validate_phone(field: str, value: Any) -> str:
    """A WhatsApp number in international format, without its separators: a recipient, or a contact
    looked up by phone."""
    text = _string(field, value, PHONE_MAX_CHARS, expected=_PHONE_EXPECTED)
    number = _PHONE_SEPARATORS.sub("", text)
    if not _INTERNATIONAL_NUMBER.fullmatch(number):
        raise _fail(field, _PHONE_EXPECTED, value, hint=_phone_hint(number))
    return number


def _looks_like_phone(text: str) -> bool:
    """Whether ``to`` can only be meant as a phone number, whatever the channel.

    Platform ids (Telegram chat ids, Instagram and Facebook ids) are bare runs of ASCII digits or
    letters, or a negative number for a Telegram group: a leading ``+``, ``0`` or ``(``, spaces
    between digits, or other digits than 0-9 mean a phone number.
    """
    stripped = text.strip()
    if not stripped or stripped[0] in "+0(":
        return bool(stripped)
    compact = _PHONE_SEPARATORS.sub("", stripped)
    return compact.isdecimal() and (" " in stripped or not compact.isascii())


def _recipient(value: Any, context: _Context) -> str:
    """Any non-empty id for Telegram, Instagram and Facebook. WhatsApp: ``+``, country code and
    number, 6 to 15 ASCII digits (spaces, dashes, dots and parentheses are dropped); a leading ``0``
    or ``00`` is refused with the ``+`` form as a hint."""
    if issubclass(type(value), int) and not issubclass(type(value), bool):
        example = f"'+{value}'" if 0 < value < 10**15 else "'+31612345678'"
        raise _fail(
            "to", "a string", value, hint=f"write a phone number as a string with '+', e.g. {example}"
        )
    if context.channel == "whatsapp":
        return validate_phone("to", value)
    text = _string("to", value, ID_MAX_CHARS)
    if context.channel is None and _looks_like_phone(text):
        validate_phone(
            "to", text
        )  # the channel comes from the connection; a phone number is checked all the same
    return text


def _http_url(field: str, value: Any, message_type: str | None) -> str:
    url = _string(field, value, URL_MAX_CHARS)
    for_type = f" for type {message_type!r}" if message_type else ""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. "http://[::1", an unclosed IPv6 address
        valid = False
    if not valid:
        raise _fail(field, f"an http(s) URL{for_type}", value)
    return url


def _content(value: Any, context: _Context) -> MessageContent:
    """An object: ``text`` (1 to 4096 characters) for type ``text``; ``url`` (http or https) for
    media, with ``text`` as an image's caption; with a template, ``text`` is the placeholder value."""
    example = '{"text": "Hello"}'
    content = _parse_json("content", value, "object", example)
    if not isinstance(content, Mapping):
        raise _fail("content", f"an object such as {example} or {{'url': 'https://...'}}", value)
    if len(content) > 2:
        raise _fail("content", "an object with at most the keys 'text' and 'url'", content)
    items: dict[str, Any] = {}
    for key, item in content.items():
        name = _as_str(key)
        if name is None:
            raise _fail("content", "an object with string keys 'text' and/or 'url'", content)
        items[name] = item
    message_type = context.message_type
    is_media = message_type not in (None, "text")
    allowed: tuple[str, ...] = ("text", "url")
    if message_type == "text":
        allowed = ("text",)
    elif is_media and message_type != "image" and not context.is_template:
        allowed = ("url",)  # outside templates only an image takes a caption
    for key in items:
        if key not in ("text", "url"):
            near = _did_you_mean(key, allowed)
            raise CallbellValidationError(
                f"content has an unknown key {shown(key)}; {near or 'no such key'} "
                f"(allowed keys{f' for type {message_type!r}' if message_type else ''}: {', '.join(allowed)})"
            )
        if key not in allowed:
            hint = (
                "to send a file set type to 'image', 'document', 'audio' or 'video'"
                if message_type == "text"
                else "only an image (or a template) takes a caption"
            )
            raise _fail(f"content.{key}", f"absent for type {message_type!r}", items[key], hint=hint)
    result: MessageContent = {}  # url first, then text: the order of Callbell's examples
    if "url" in items:
        result["url"] = _http_url("content.url", items["url"], message_type)
    elif is_media:
        raise _fail(
            "content.url",
            f"an http(s) URL for type {message_type!r}",
            hint="the file to send goes in content.url; content.text is only a caption",
        )
    if "text" in items:
        result["text"] = _string("content.text", items["text"], TEXT_MAX_CHARS)
    elif message_type == "text" and not context.is_template:
        raise _fail("content.text", "a non-empty string for type 'text'", hint=f"use content={example}")
    return result


def _template_values(value: Any, context: _Context) -> list[str]:
    """A list of at most 100 strings (or its JSON text), one per placeholder ``{{1}}``, ``{{2}}``...;
    needs ``template_uuid``."""
    values = _parse_json("template_values", value, "list", '["Ada", "#1042"]')
    if not _is_list(values):
        raise _fail("template_values", "a list of strings", value)
    if len(values) > TEMPLATE_VALUES_MAX:
        raise _fail(
            "template_values",
            f"a list of at most {TEMPLATE_VALUES_MAX} strings",
            _Said(f"{len(values)} values"),
        )
    result = []
    for index, item in enumerate(values):
        text = _as_str(item)
        if text is None:
            raise _fail(
                "template_values",
                "a list of strings",
                values,
                hint=f"template_values[{index}] is {shown(item)}",
            )
        # A placeholder may be blank.
        result.append(_string(f"template_values[{index}]", text, TEXT_MAX_CHARS, "a string", blank=True))
    return result


def _email(value: Any, context: _Context) -> str:
    """The e-mail address of a team member (``name@domain.tld``, at most 254 characters)."""
    expected = "the e-mail address of a team member"
    text = _string("assigned_user", value, EMAIL_MAX_CHARS, expected=expected)
    local, _, domain = text.partition("@")
    # The linear equivalent of [^@\s]+@[^@\s]+\.[^@\s]+ : one "@", no spaces, a dot inside the domain.
    if not local or "@" in domain or "." not in domain[1:-1] or any(c.isspace() for c in text):
        raise _fail("assigned_user", expected, value)
    return text


def _fields(value: Any, context: _Context) -> str:
    """``contact``, ``conversation`` or both, as a comma-separated string or a list."""
    expected = "a comma-separated string or list of 'contact', 'conversation'"
    text = _as_str(value)
    if text is not None:
        names: Any = text.split(",") if len(text) <= 64 else None
    else:
        names = value if _is_list(value) and 0 < len(value) <= len(RESPONSE_FIELDS) else None
    if not names:
        raise _fail("fields", expected, value)
    cleaned = [
        _one_of("fields", (_as_str(name) or name).strip() if _as_str(name) else name, RESPONSE_FIELDS)
        for name in names
    ]
    return ",".join(cleaned)


def _metadata(value: Any, context: _Context) -> dict[str, str]:
    """An object of at most 10 pairs: keys of 1 to 50 characters, string values of at most 500."""
    metadata = _parse_json("metadata", value, "object", '{"order_id": "1042"}')
    if not isinstance(metadata, Mapping):
        raise _fail("metadata", "an object of string keys and values", value)
    if len(metadata) > METADATA_MAX_PAIRS:
        raise _fail("metadata", f"at most {METADATA_MAX_PAIRS} pairs", _Said(f"{len(metadata)} pairs"))
    result: dict[str, str] = {}
    for key, item in metadata.items():
        name = _as_str(key)
        if name is None or not 0 < len(name) <= METADATA_MAX_KEY_CHARS:
            raise _fail("metadata key", f"a string of 1 to {METADATA_MAX_KEY_CHARS} characters", key)
        _string("metadata key", name, METADATA_MAX_KEY_CHARS)
        field = f"metadata[{shown(name)}]"
        text = _as_str(item)
        if text is None:
            hint = None
            if issubclass(type(item), (int, float)) and not issubclass(type(item), bool):
                hint = f"metadata values are strings: write {shown(item)} in quotes"
            raise _fail(field, f"a string of at most {METADATA_MAX_VALUE_CHARS} characters", item, hint=hint)
        result[name] = _string(field, text, METADATA_MAX_VALUE_CHARS, "a string", blank=True)
    return result


def _optin(value: Any, context: _Context) -> bool:
    """``True`` or ``False``; must be ``True`` with ``template_uuid``."""
    if not issubclass(type(value), bool):
        raise _fail("optin_contact", "True or False", value)
    return bool(value)


def _id(field: str) -> Callable[[Any, _Context], str]:
    def check(value: Any, context: _Context) -> str:
        return _string(field, value, ID_MAX_CHARS)

    check.__doc__ = f"A non-empty string of at most {ID_MAX_CHARS} characters."
    return check


def _choice(field: str, allowed: tuple[str, ...]) -> Callable[[Any, _Context], str]:
    def check(value: Any, context: _Context) -> str:
        return _one_of(field, value, allowed)

    check.__doc__ = f"One of {', '.join(f'``{a}``' for a in allowed)}; a near miss gets a suggestion."
    return check


#: Each field's check, by its name in the body (``from``), in the order of Callbell's examples.
_CHECKS: dict[str, Callable[[Any, _Context], Any]] = {
    "to": _recipient,
    "bsuid": _id("bsuid"),
    "from": _choice("from", CHANNEL_TYPES),
    "type": _choice("type", MESSAGE_TYPES),
    "content": _content,
    "channel_uuid": _id("channel_uuid"),
    "template_uuid": _id("template_uuid"),
    "optin_contact": _optin,
    "template_values": _template_values,
    "assigned_user": _email,
    "team_uuid": _id("team_uuid"),
    "fields": _fields,
    "bot_status": _choice("bot_status", BOT_STATUSES),
    "metadata": _metadata,
}


def _body_key(field: str) -> str:
    return "from" if field == "from_" else field


def _checked(field: str, value: Any, context: _Context) -> Any:
    """Run one field's check; any error but ours (from a hostile object, say) becomes ours."""
    try:
        return _CHECKS[field](value, context)
    except CallbellValidationError:
        raise
    except Exception as err:  # RecursionError, TypeError from an object's own __eq__, ...
        raise _fail(field, "a plain value", value, hint=f"checking it raised {type(err).__name__}") from None


def _check_names(names: Collection[Any]) -> None:
    for name in names:
        text = _as_str(name)
        if text not in MESSAGE_FIELDS:
            near = _did_you_mean(text, (*MESSAGE_FIELDS, "from")) if text is not None else None
            raise CallbellValidationError(
                f"{shown(name)} is not a message field; expected {', '.join(MESSAGE_FIELDS)} (or 'from')"
                + (f"; {near}" if near else "")
            )


def _check_message(message: Mapping[str, Any], unknown: Collection[str] = ()) -> SendMessagePayload:
    """Check a message and return its body; fields named in ``unknown`` are not known yet.

    ``unknown`` fields (templated, or set by the connection) are skipped, and so is every rule that
    depends on them: ``to`` with an unknown channel gets the checks that hold on every channel,
    ``content`` with an unknown type only those that hold for every type.
    """

    def known(name: str) -> Any:
        return None if name in unknown else message.get(name)

    def given(name: str) -> bool:
        return name in unknown or message.get(name) is not None

    def known_or(name: str, default: str) -> Any:
        value = known(name)
        return default if value is None else value

    nothing = _Context(None, None, False)
    channel = None if "from_" in unknown else _checked("from", known_or("from_", DEFAULT_CHANNEL), nothing)
    message_type = None if "type" in unknown else _checked("type", known_or("type", DEFAULT_TYPE), nothing)
    if not given("to") and not given("bsuid"):
        raise CallbellValidationError("to or bsuid is required: the recipient of the message")
    if not given("content"):
        raise _fail("content", "an object such as {'text': '...'} or {'url': 'https://...'}", None)
    if given("template_uuid"):
        if known("template_uuid") is not None:
            _checked("template_uuid", known("template_uuid"), _Context(None, None, True))
        optin = known("optin_contact")
        if "optin_contact" not in unknown and optin is not True:
            raise _fail(
                "optin_contact",
                "True with template_uuid (you confirm the contact opted in to template messages)",
                optin,
            )
    elif given("template_values"):
        raise _fail("template_uuid", "set when template_values is given", None)
    context = _Context(channel, message_type, is_template=given("template_uuid"))
    body: dict[str, Any] = {}
    for key in _CHECKS:
        field = "from_" if key == "from" else key
        if key == "from":
            body[key] = channel
        elif key == "type":
            body[key] = message_type
        elif known(field) is not None:
            body[key] = _checked(key, known(field), context)
    return body  # type: ignore[return-value]  # built key by key from SendMessagePayload's own keys


def build_send_payload(to: str | None = None, **options: Unpack[MessageOptions]) -> SendMessagePayload:
    """Check one message and return the body Callbell expects, with only the fields given.

    Keys come out in the order of Callbell's documented examples (``to``, ``from``, ``type``,
    ``content``, then the options), so a documented example serialises to the very same JSON.
    ``from_`` defaults to ``whatsapp``, ``type`` to ``text``.

    :raises CallbellValidationError: naming the first field at fault and what it expects; for any
        value whatsoever, and in time linear in the value's size.
    """
    _check_names(options)
    return _check_message({"to": to, **options})


def message_fields(message: Any) -> dict[str, Any]:
    """Turn one message mapping of a bulk send into :func:`build_send_payload`'s keyword arguments.

    JSON data spells the channel ``from`` (Callbell's own name), Python code ``from_``: both are
    accepted, not both at once. ``None`` values count as absent, so that a JSON ``null`` takes the
    default like a missing key does.
    """
    if not isinstance(message, Mapping):
        raise _fail("a message", "an object of message fields such as {'to': ..., 'content': {...}}", message)
    try:
        fields = {key: value for key, value in message.items() if value is not None}
    except Exception as err:
        raise _fail(
            "a message", "a plain mapping", message, hint=f"reading it raised {type(err).__name__}"
        ) from None
    if "from" in fields:
        if "from_" in fields:
            raise _fail("from", "absent when from_ is given (both name the channel)", fields["from"])
        fields["from_"] = fields.pop("from")
    _check_names(fields)
    return fields


# -- Parse-time checks -----------------------------------------------------------------------------


def is_templated(value: Any, depth: int = 0) -> bool:
    """Whether Airflow will replace (part of) ``value`` when it renders template fields.

    That is: a string with Jinja markup, an ``XComArg`` or any other ``ResolveMixin`` (mapped values,
    ``PlainXComArg``, ``LiteralValue``), or a list, tuple, set or dict holding one.
    """
    text = _as_str(value)
    if text is not None:
        return "{{" in text or "{%" in text or "{#" in text
    from airflow_provider_callbell.version_compat import ResolveMixin

    if isinstance(value, ResolveMixin):
        return True
    if depth < 8 and issubclass(type(value), (list, tuple, set, frozenset, dict)):
        items = value.values() if issubclass(type(value), dict) else value
        return any(is_templated(item, depth + 1) for item in items)
    return False


#: Stand-ins for templated values inside ``content``, so that its keys are checked at parse time.
_CONTENT_STAND_INS = {"text": "rendered later", "url": "https://rendered.later/"}


def check_literal_fields(owner: str, message: Mapping[str, Any], *, unknown: Collection[str] = ()) -> None:
    """Check, when a DAG file is parsed, the fields of ``message`` that are already known.

    The same rules and messages as :func:`build_send_payload` at run time, for every field that is a
    literal: templated fields (see :func:`is_templated`) and those in ``unknown`` are checked after
    rendering, and a channel left to the connection (``from_`` None) is not known yet, so ``to`` gets
    the checks that hold on every channel (a number written as a phone number is checked as one).
    Inside ``content``, templated values are stood in for, so that its keys are still checked.

    :param owner: who holds the message, for the error: ``task 'notify'``, ``CallbellNotifier``.
    :raises CallbellValidationError: ``<owner>: <the run-time error>``.
    """
    not_known = set(unknown)
    fields = dict(message)
    for name, value in message.items():
        if name == "content" and isinstance(value, dict) and is_templated(value):
            fields[name] = {
                k: _CONTENT_STAND_INS.get(k, v) if is_templated(v) else v for k, v in value.items()
            }
        elif is_templated(value):
            not_known.add(name)
    if fields.get("from_") is None:
        not_known.add("from_")  # the connection's default channel, read at run time
    with raised_for(owner):
        _check_names(fields)
        _check_message(fields, frozenset(not_known))


@contextmanager
def raised_for(owner: str) -> Iterator[None]:
    """Prefix a validation error with who holds the value: ``task 'notify': to must be ...``."""
    try:
        yield
    except CallbellValidationError as err:
        raise CallbellValidationError(f"{owner}: {err}") from None


def check_max_rps(value: Any) -> float:
    """A bulk send's rate: a finite number of requests per second from 0.1 to 10,000."""
    expected = f"a number of requests per second from {MIN_RPS:g} to {MAX_RPS:,.0f}"
    if issubclass(type(value), bool) or not issubclass(type(value), (int, float)):
        raise _fail("max_rps", expected, value)
    try:  # the base class's conversion: a subclass's own __float__ is never called
        rate = int.__float__(value) if issubclass(type(value), int) else float.__float__(value)
    except OverflowError:
        rate = float("inf")
    if not MIN_RPS <= rate <= MAX_RPS:  # NaN fails every comparison
        raise _fail(
            "max_rps", expected, value, hint="Callbell allows 300 per account" if rate > MAX_RPS else None
        )
    return rate


# -- The docs --------------------------------------------------------------------------------------


def describe_fields() -> list[tuple[str, str, str]]:
    """``(field, meaning, rule checked)`` for every message field, from :class:`MessageFields` and the
    checks themselves: the field table of ``docs/sending.md`` is made from it."""
    from typing import get_type_hints

    hints = get_type_hints(MessageFields, include_extras=True)
    rows = []
    for field in MESSAGE_FIELDS:
        rule = " ".join((_CHECKS[_body_key(field)].__doc__ or "").split())
        rows.append((field, str(hints[field].__metadata__[0]), rule))
    return rows


def fields_table() -> str:
    """The Markdown table of :func:`describe_fields`."""
    lines = ["| field | what it is | checked |", "| --- | --- | --- |"]
    for field, meaning, rule in describe_fields():
        md = [text.replace("``", "`").replace("|", "\\|") for text in (meaning, rule)]
        lines.append(f"| `{field}` | {md[0]} | {md[1]} |")
    return "\n".join(lines)
