"""Send Callbell messages from a task: one (``CallbellSendMessageOperator``) or many (``...MessagesOperator``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_callbell.fields import MESSAGE_FIELDS
from airflow_provider_callbell.fields import RECIPIENT_KEYS as RECIPIENT_KEYS
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.version_compat import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from airflow_provider_callbell.version_compat import Context

#: The XCom key under which the whole message object (uuid, status, contact, ...) is pushed.
XCOM_MESSAGE_KEY = "callbell_message"
#: The XCom keys of a bulk send: every message's compact result, and the counts with the failures.
XCOM_RESULTS_KEY = "callbell_results"
XCOM_SUMMARY_KEY = "callbell_summary"
#: Past this many messages a bulk send keeps its XCom small: the summary only, no per-message list.
XCOM_RESULTS_MAX = 10_000
#: How many failures the summary lists (it counts them all).
XCOM_FAILURES_MAX = 100


class CallbellSendMessageOperator(CallbellHookMixin, BaseOperator):
    """
    Send a WhatsApp, Telegram, Instagram or Facebook message through Callbell.

    Every field given as a literal (no Jinja, no XComArg) is checked when the DAG file is parsed, so a
    wrong one is a DAG import error naming the task and the field; templated fields are checked after
    rendering, before anything is sent. The task returns the enqueued message's uuid
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
        callbell_conn_id: str = DEFAULT_CONN_ID,
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
        # A wrong literal is a DAG import error naming the task, not a failure at run time. The rules
        # are imported here, not with the module: a DAG file that never builds this operator skips them.
        from airflow_provider_callbell.validation import check_literal_fields

        check_literal_fields(f"task {self.task_id!r}", {name: getattr(self, name) for name in MESSAGE_FIELDS})

    def execute(self, context: Context) -> str:
        message = self.hook.send_message(**{name: getattr(self, name) for name in MESSAGE_FIELDS})
        context["ti"].xcom_push(key=XCOM_MESSAGE_KEY, value=message)
        uuid: str = message["uuid"]
        return uuid


class CallbellSendMessagesOperator(CallbellHookMixin, BaseOperator):
    """
    Send many Callbell messages from one task, concurrently at up to the account's rate limit.

    Give either ``messages`` (complete messages), or ``recipients`` and one ``message`` sent to each.
    The literal fields of ``message`` and ``max_rps`` are checked when the DAG file is parsed.
    ``message`` is rendered with Jinja once per recipient, with the task's context plus ``recipient``:
    a string recipient is its ``to``, a dict recipient gives ``to`` (or ``bsuid``) and any values the
    template uses. Every message is rendered and validated before the first one is sent; then all are
    attempted, and the task fails if any failed, naming how many and why.

    .. code-block:: python

        CallbellSendMessagesOperator(
            task_id="order_updates",
            recipients=[{"to": "+31612345678", "name": "Ada", "order": "1042"}, ...],  # or an XComArg
            message={"content": {"text": "Hi {{ recipient.name }}, order {{ recipient.order }} ships {{ ds }}"}},
        )

    XCom: ``return_value`` is each message's uuid (``None`` where it failed) in input order;
    ``callbell_results`` holds each message's compact result (Callbell's message object, or a failure
    record ``{"error", "status_code", "to"}``); ``callbell_summary`` holds the counts and the first 100
    failures with their index. Past 10,000 messages only the summary is pushed (``return_value`` is
    ``None``), to keep Airflow's database small.

    A retry does not send again what an earlier try of the same task instance sent: progress is kept
    in the Airflow Variable ``callbell_progress/<dag_id>/<task_id>/<run_id>/<map_index>`` in batches,
    and deleted when the task succeeds (see :mod:`airflow_provider_callbell.progress`). A message that
    failed is sent again by the retry. A message whose delivery is unknown (a ``500``, or no answer
    after it was sent: it may have gone out) is counted apart as ``unknown``, fails the task too, and
    is not sent again by a retry unless the connection's ``delivery`` extra is ``"at_least_once"``.

    Bigger audiences: split them into chunks and map this operator over them in a pool, with each
    task's ``max_rps`` set to the account's limit divided by the pool's slots (see the README).

    :param messages: the messages, each a dict of :class:`CallbellSendMessageOperator`'s message
        fields (``to``, ``type``, ``content``, ``from_`` or ``from``, ...), as a list, a JSON list or
        an XComArg. (templated)
    :param recipients: who receives ``message``: phone numbers or platform ids, or dicts with ``to``
        (or ``bsuid``) and per-recipient values, as a list, a JSON list or an XComArg. (templated)
    :param message: the message fields for each recipient (no ``to``/``bsuid``), as a dict or a JSON
        object; string values are Jinja templates rendered per recipient with ``recipient`` in the
        context. (templated per recipient)
    :param max_rps: the most requests per second this task starts, from 0.1 to 10,000; default 285 (95%
        of Callbell's 300). Tasks that send at the same time share the account's limit: divide it
        between them.
    :param max_workers: concurrent requests, 1 to 64; by default sized for ``max_rps``.
    :param callbell_conn_id: the Airflow connection holding the API token.
    """

    template_fields: Sequence[str] = ("messages", "recipients")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "messages": "json",
        "recipients": "json",
    }
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        messages: Iterable[Mapping[str, Any]] | str | None = None,
        recipients: Iterable[str | Mapping[str, Any]] | str | None = None,
        message: Mapping[str, Any] | str | None = None,
        max_rps: float | None = None,
        max_workers: int | None = None,
        callbell_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_provider_callbell.exceptions import CallbellValidationError

        if (messages is None) == (recipients is None):
            raise CallbellValidationError(
                "give either messages (complete messages) or recipients (with one message for each)"
            )
        if (recipients is None) != (message is None):
            raise CallbellValidationError(
                "message and recipients go together: message is what each recipient is sent, "
                "with {{ recipient.<key> }} for their own values"
            )
        if message is not None:
            self._check_message_literals(message)
        if max_rps is not None:
            from airflow_provider_callbell.validation import check_max_rps, raised_for

            with raised_for(f"task {self.task_id!r}"):
                check_max_rps(max_rps)
        self.messages = messages
        self.recipients = recipients
        self.message = message
        self.max_rps = max_rps
        self.max_workers = max_workers
        self.callbell_conn_id = callbell_conn_id

    def _check_message_literals(self, message: Mapping[str, Any] | str) -> None:
        """Check the literal fields of ``message`` now; each recipient gives its own ``to``/``bsuid``.

        ``message`` is not a template field (Airflow never renders it, only its string values are
        rendered per recipient), so a JSON string that does not parse now never will.
        """
        from airflow_provider_callbell.recipients import message_template
        from airflow_provider_callbell.validation import check_literal_fields

        template = message_template(message)
        fields = {"from_" if key == "from" else key: value for key, value in template.items()}
        check_literal_fields(f"task {self.task_id!r}: message", fields, unknown=RECIPIENT_KEYS)

    def execute(self, context: Context) -> list[str | None] | None:
        from airflow_provider_callbell.bulk import describe_failures, is_delivery_unknown
        from airflow_provider_callbell.exceptions import CallbellBulkSendError
        from airflow_provider_callbell.progress import SENT_EARLIER, VariableProgress

        ti = context["ti"]
        progress = VariableProgress.for_task_instance(ti, uuids_kept_max=XCOM_RESULTS_MAX)
        self._stop = threading.Event()
        results = self.hook.send_messages(
            self._each_message(context),
            max_rps=self.max_rps,
            max_workers=self.max_workers,
            progress=progress,
            stop=self._stop,
        )
        failures = [{"index": i, **r} for i, r in enumerate(results) if "error" in r]
        unknown = sum(map(is_delivery_unknown, failures))
        earlier = sum(r.get("status") == SENT_EARLIER for r in results)
        summary = {
            "total": len(results),
            "sent": len(results) - len(failures) - earlier,
            "sent_earlier": earlier,
            "failed": len(failures) - unknown,
            "unknown": unknown,
            "failures": failures[:XCOM_FAILURES_MAX],
            "progress_variable": progress.key,
        }
        ti.xcom_push(key=XCOM_SUMMARY_KEY, value=summary)
        small = len(results) <= XCOM_RESULTS_MAX
        if small:
            ti.xcom_push(key=XCOM_RESULTS_KEY, value=results)
        if failures:
            sent = f"{len(results) - len(failures)} sent" + (
                f", {earlier} of them by earlier tries" if earlier else ""
            )
            retry = "a retry of this task sends only the failed ones"
            if unknown:
                sent += f", {unknown} unknown"
                retry += (
                    f"; {unknown} got no clear answer (a 500, or none after sending) and may have gone "
                    "out, so a retry does not send them again unless the connection's delivery is "
                    "'at_least_once': check them in Callbell"
                )
            raise CallbellBulkSendError(
                f"{len(failures)} of {len(results)} Callbell messages failed ({sent}); {retry}. "
                f"Why: {describe_failures(results)}",
                failed=len(failures),
                total=len(results),
            )
        progress.delete()
        return [r.get("uuid") for r in results] if small else None

    def on_kill(self) -> None:
        """Stop a running send cleanly: no message starts after this; those in flight finish.

        Airflow 3 calls this on SIGTERM (a worker shutting down, a task marked failed) and otherwise lets
        the task run on until it is killed outright. Stopping here means every message that went out
        is recorded in the progress Variable, so the retry does not send it again.
        """
        stop: threading.Event | None = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def _each_message(self, context: Context) -> Iterator[Mapping[str, Any]]:
        """The messages to send, one at a time: as given, or rendered for each recipient."""
        from airflow_provider_callbell.recipients import json_list, render_for_recipients

        if self.recipients is None:
            yield from json_list("messages", self.messages)
            return
        # The DAG's environment, as Airflow renders template fields with: its macros, filters and
        # StrictUndefined, so that a misspelt recipient key fails instead of sending a blank.
        yield from render_for_recipients(
            self.message,
            self.recipients,
            lambda: self.get_template_env(dag=self.dag if self.has_dag() else None),  # type: ignore[no-untyped-call]
            context,
        )
