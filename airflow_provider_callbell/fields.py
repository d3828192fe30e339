"""One description of a message: its fields, their types and what each means.

:class:`MessageOptions` names every field of a message but its recipient, each with its type and a
sentence for people; the field tuple :data:`MESSAGE_FIELDS` (the operators' and the notifier's
template fields), the hook's signatures and the field table of the docs derive from it, and
:mod:`~airflow_provider_callbell.validation` holds the rules that check each field.

It stands apart from those rules because a DAG file needs it first: the operators and the notifier
name their template fields when their module is imported, while the rules are imported when a literal
field is first checked. So this module imports nothing but ``typing``.
"""

from __future__ import annotations

# At run time, not only for type checkers: the docs' field table reads the hints (``get_type_hints``).
from collections.abc import Mapping, Sequence  # noqa: TC003
from typing import Annotated, Any, Literal, TypedDict

MessageType = Literal["text", "image", "document", "audio", "video"]
ChannelType = Literal["whatsapp", "facebook", "instagram", "telegram"]
BotStatus = Literal["bot_start", "bot_end"]
ResponseField = Literal["contact", "conversation"]


class MessageContent(TypedDict, total=False):
    """The ``content`` object: ``text`` for text messages and captions, ``url`` for media."""

    text: str
    url: str


class MessageOptions(TypedDict, total=False):
    """Every field of a message but its recipient ``to``, each with what it means.

    :class:`~airflow_provider_callbell.validation.MessageFields` adds ``to``.
    """

    type: Annotated[MessageType, "``text`` (the default), ``image``, ``document``, ``audio`` or ``video``"]
    content: Annotated[
        Mapping[str, Any] | str | None,
        '``{"text": ...}`` for text, ``{"url": ...}`` for media (with ``"text"`` as an image\'s caption), '
        "as a dict or a JSON string",
    ]
    from_: Annotated[
        ChannelType | None,
        "the channel type, ``from`` in Callbell's API: ``whatsapp``, ``facebook``, ``instagram`` or "
        "``telegram``; default: the connection's ``from`` extra, else ``whatsapp``",
    ]
    bsuid: Annotated[str | None, "WhatsApp Business Suite User ID, instead of ``to``"]
    channel_uuid: Annotated[
        str | None, "the sending channel; default: the connection's ``channel_uuid`` extra"
    ]
    template_uuid: Annotated[str | None, "an approved template to send (outside WhatsApp's 24-hour window)"]
    optin_contact: Annotated[bool | None, "must be ``True`` with a template: the contact opted in"]
    template_values: Annotated[
        Sequence[str] | str | None, "the values of the template's placeholders ``{{1}}``, ``{{2}}``..."
    ]
    assigned_user: Annotated[str | None, "e-mail of the team member to assign the conversation to"]
    team_uuid: Annotated[str | None, "the team to assign the conversation to"]
    fields: Annotated[
        Sequence[ResponseField] | str | None, "extra objects in the answer: ``contact``, ``conversation``"
    ]
    bot_status: Annotated[BotStatus | None, "``bot_start`` or ``bot_end``"]
    metadata: Annotated[
        Mapping[str, str] | str | None, "up to 10 string pairs echoed in webhooks; never put secrets there"
    ]


#: The fields of one message, in the order of the operator's parameters: ``to`` first.
MESSAGE_FIELDS: tuple[str, ...] = ("to", *MessageOptions.__annotations__)
#: Where a recipient's identity goes in its message; every other key of a bulk send's recipient is a
#: template value.
RECIPIENT_KEYS: tuple[str, ...] = ("to", "bsuid")
