"""Send one Callbell message from a task."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_callbell.version_compat import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_callbell.hooks.callbell import CallbellHook
    from airflow_provider_callbell.version_compat import Context

#: Every field of a message, in ``CallbellHook.send_message``'s terms; all of them are templated.
MESSAGE_FIELDS: tuple[str, ...] = (
    "to",
    "type",
    "content",
    "from_",
    "bsuid",
    "channel_uuid",
    "template_uuid",
    "optin_contact",
    "template_values",
    "assigned_user",
    "team_uuid",
    "fields",
    "bot_status",
    "metadata",
)

#: The XCom key under which the whole message object (uuid, status, contact, ...) is pushed.
XCOM_MESSAGE_KEY = "callbell_message"


class CallbellSendMessageOperator(BaseOperator):
    """
    Send a WhatsApp, Telegram, Instagram or Facebook message through Callbell.

    The message is checked before anything is sent; the task returns the enqueued message's uuid
    (XCom ``return_value``) and pushes Callbell's whole message object under the key
    ``callbell_message``.

    .. code-block:: python

        CallbellSendMessageOperator(
            task_id="tell_the_team",
            to="+31612345678",
            content={"text": "Loaded {{ ti.xcom_pull('load') }} rows for {{ ds }}"},
        )

    Mapped over recipients: ``CallbellSendMessageOperator.partial(task_id="notify",
    content={"text": "Hi"}).expand(to=["+31612345678", "+31687654321"])``.

    :param to: phone number (WhatsApp) or platform identifier of the recipient. (templated)
    :param type: ``text``, ``image``, ``document``, ``audio`` or ``video``. (templated)
    :param content: ``{"text": ...}`` for text, ``{"url": ..., "text": caption}`` for media, as a dict
        or a JSON string. (templated)
    :param from_: channel type; defaults to the connection's ``from`` extra, else ``whatsapp``. (templated)
    :param bsuid: WhatsApp Business Suite User ID, instead of ``to``. (templated)
    :param channel_uuid: sending channel; defaults to the connection's extra. (templated)
    :param template_uuid: approved template to send. (templated)
    :param optin_contact: must be ``True`` with a template: the contact opted in. (templated)
    :param template_values: values of the template's placeholders ``{{1}}``, ``{{2}}``... (templated)
    :param assigned_user: e-mail of the team member to assign the conversation to. (templated)
    :param team_uuid: team to assign the conversation to. (templated)
    :param fields: extra objects in the answer: ``contact``, ``conversation``. (templated)
    :param bot_status: ``bot_start`` or ``bot_end``. (templated)
    :param metadata: up to 10 string pairs echoed in webhooks; never put secrets there. (templated)
    :param callbell_conn_id: the Airflow connection holding the API token.
    """

    template_fields: Sequence[str] = MESSAGE_FIELDS
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "content": "json",
        "metadata": "json",
        "template_values": "json",
    }
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        to: str | None = None,
        type: str = "text",
        content: Mapping[str, Any] | str | None = None,
        from_: str | None = None,
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
        callbell_conn_id: str = "callbell_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.type = type
        self.content = content
        self.from_ = from_
        self.bsuid = bsuid
        self.channel_uuid = channel_uuid
        self.template_uuid = template_uuid
        self.optin_contact = optin_contact
        self.template_values = template_values
        self.assigned_user = assigned_user
        self.team_uuid = team_uuid
        self.fields = fields
        self.bot_status = bot_status
        self.metadata = metadata
        self.callbell_conn_id = callbell_conn_id

    @cached_property
    def hook(self) -> CallbellHook:
        """The hook, imported here so that parsing a DAG never imports ``requests``."""
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        return CallbellHook(callbell_conn_id=self.callbell_conn_id)

    def execute(self, context: Context) -> str:
        message = self.hook.send_message(**{name: getattr(self, name) for name in MESSAGE_FIELDS})
        context["ti"].xcom_push(key=XCOM_MESSAGE_KEY, value=message)
        uuid: str = message["uuid"]
        return uuid
