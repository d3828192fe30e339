"""Send Callbell messages from a task: one (``CallbellSendMessageOperator``) or many (``...MessagesOperator``)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_callbell.fields import MESSAGE_FIELDS
from airflow_provider_callbell.fields import RECIPIENT_KEYS as RECIPIENT_KEYS
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID, CallbellHookMixin
from airflow_provider_callbell.version_compat import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from airflow_provider_callbell.hooks.callbell import CallbellHook
    from airflow_provider_callbell.progress import VariableProgress
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
#: How far before an unanswered attempt's start a retry looks for its message: clock skew between the
#: worker and Callbell, whose ``createdAt`` has whole seconds.
CLOCK_SKEW = timedelta(seconds=60)
#: How many conversation pages a retry reads looking for an earlier try's message.
SEARCH_MAX_PAGES = 10


def _recipient_of(payload: Mapping[str, Any]) -> Any:
    return payload.get("to", payload.get("bsuid"))


def _text_of(payload: Mapping[str, Any]) -> str | None:
    """The text a conversation lists for a message: its text (or caption); ``None`` without one."""
    text = payload.get("content", {}).get("text")
    return text if isinstance(text, str) and text else None


def find_sent_message(
    hook: CallbellHook, payload: Mapping[str, Any], since: int | None, texts: Sequence[str]
) -> tuple[dict[str, Any] | None, str]:
    """Look in the recipient's conversation for a message sent since ``since`` whose text digest is in ``texts``.

    Callbell lists a contact's messages newest first: an outgoing one has ``status`` ``sent``, a uuid,
    its ``text`` and ``createdAt`` (whole seconds), and nothing else of the request (no type, media
    url, template or metadata), so the text is all that can be compared. The contact is found by
    phone number on the channel the message was sent from; bsuids, platform ids of other channels
    and messages without text cannot be checked. Returns the oldest match as
    ``{"uuid", "status": "sent_in_earlier_try"}``, or ``None`` and what was looked at, for the error.
    """
    from airflow_provider_callbell.exceptions import CallbellValidationError
    from airflow_provider_callbell.progress import SENT_EARLIER, text_digest
    from airflow_provider_callbell.replies import parse_created_at
    from airflow_provider_callbell.validation import validate_phone, validate_uuid

    to, channel_uuid = payload.get("to"), payload.get("channel_uuid")
    if since is None or not texts:
        return None, "it could not be looked for (a message without text cannot be recognised)"
    if to is None or (payload.get("from") != "whatsapp" and channel_uuid is None):
        return None, "it could not be looked for (only a phone number's conversation can be found)"
    try:
        phone = validate_phone("to", to)
    except CallbellValidationError:
        return None, "it could not be looked for (only a phone number's conversation can be found)"
    contact = hook.get_contact_by_phone(phone, channel_uuid)
    floor = datetime.fromtimestamp(since, timezone.utc) - CLOCK_SKEW
    looked = f"the conversation does not list it since {floor.isoformat()}"
    if contact is None:
        return None, looked
    found: dict[str, Any] | None = None
    for message in hook.list_contact_messages(contact["uuid"], since=floor, max_pages=SEARCH_MAX_PAGES):
        text, created = message.get("text"), parse_created_at(message.get("createdAt"))
        if (
            message.get("status") == "sent"
            and isinstance(text, str)
            and created is not None
            and created >= floor
            and text_digest(text, hook._settings.token) in texts
        ):
            try:
                found = {"uuid": validate_uuid("uuid", message.get("uuid")), "status": SENT_EARLIER}
            except CallbellValidationError:
                continue  # a listed message without a usable uuid is no proof
    return found, looked


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
        from airflow_provider_callbell.bulk import DELIVERY_UNKNOWN, recipients_digest
        from airflow_provider_callbell.progress import VariableProgress, text_digest

        fields = {name: getattr(self, name) for name in MESSAGE_FIELDS}
        hook = self.hook
        payload = hook._build_payload(**fields)  # bad input fails here, before any state is read
        at_least_once = hook._settings.retry.delivery == "at_least_once"
        progress = VariableProgress.for_task_instance(context["ti"], at_least_once=at_least_once)
        earlier = progress.begin(1, recipients_digest([payload])).get(0)
        if earlier is not None:
            found = earlier if "uuid" in earlier else self._find_earlier_send(progress, payload)
            if found is not None:
                return self._done(context, progress, found)
        started = time.time()
        try:
            message = hook.send_message(**fields)
        except BaseException as err:
            # A timeout of the task, a SIGTERM or a Ctrl-C may stop the send after the request left:
            # remember it, so that a retry looks for it before sending again.
            if _may_have_gone_out(err):
                text = _text_of(payload)
                progress.record_attempt(
                    started, None if text is None else text_digest(text, hook._settings.token)
                )
                progress.record(0, {DELIVERY_UNKNOWN: True})
                progress.flush()
            raise
        return self._done(context, progress, message)

    def _done(self, context: Context, progress: VariableProgress, message: dict[str, Any]) -> str:
        progress.delete()
        context["ti"].xcom_push(key=XCOM_MESSAGE_KEY, value=message)
        uuid: str = message["uuid"]
        return uuid

    def _find_earlier_send(
        self, progress: VariableProgress, payload: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Whether an earlier try's message, whose fate it did not learn, is in the contact's conversation.

        Found: its ``{"uuid", "status": "sent_in_earlier_try"}``. Not found: ``None`` under
        ``at_least_once`` (it is sent again); under ``at_most_once``, :class:`CallbellProgressError`.
        """
        from airflow_provider_callbell.exceptions import CallbellProgressError

        since = progress.known.unknown_since
        found, looked = find_sent_message(self.hook, payload, since, progress.known.unknown_texts)
        if found is not None:
            self.log.info(
                "Callbell: an earlier try's message to %s got no clear answer, but the conversation "
                "lists it as %s; not sending it again",
                _recipient_of(payload),
                found["uuid"],
            )
            return found
        if progress.at_least_once:
            self.log.warning(
                "Callbell: an earlier try's message to %s got no clear answer and %s; sending it again "
                "(delivery='at_least_once')",
                _recipient_of(payload),
                looked,
            )
            return None
        raise CallbellProgressError(
            f"an earlier try of this task sent this message to {_recipient_of(payload)} and got no clear "
            f"answer (a 500, or none after sending), and {looked}, so it may or may not have gone out; "
            "not sending it again (delivery='at_most_once'). Check the conversation in Callbell; to send "
            f"it anyway, delete the Variable (airflow variables delete '{progress.key}') and clear the "
            "task, or set the connection's delivery extra to 'at_least_once'.",
            key=progress.key,
        )


def _may_have_gone_out(error: BaseException) -> bool:
    """Whether a send that raised ``error`` may have reached Callbell, so that a retry must look first.

    Only a :class:`CallbellError` proves that nothing left: bad input or configuration (raised before
    any request), or an answer that says Callbell did not act (``maybe_acted_on`` false). Anything
    else (a task timeout, a SIGTERM, a ``KeyboardInterrupt``, a bug) may have struck mid-request.
    """
    from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellError

    if isinstance(error, CallbellAPIError):
        return error.maybe_acted_on
    return not isinstance(error, CallbellError)


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
    in the Airflow Variable ``callbell_progress/<dag_id>/<task_id>/<run_id>/<map_index>``, each block
    of messages claimed there before any of it is sent, and deleted when the task succeeds (see
    :mod:`airflow_provider_callbell.progress`). A message that failed is sent again by the retry. A
    message whose delivery is unknown (a ``500``, no answer after it was sent, or claimed by a try
    whose worker was killed before it recorded the answer: it may have gone out) is counted apart as
    ``unknown``, fails the task too, and is not sent again by a retry unless the connection's
    ``delivery`` extra is ``"at_least_once"``.

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
        progress = VariableProgress.for_task_instance(
            ti,
            uuids_kept_max=XCOM_RESULTS_MAX,
            at_least_once=self.hook._settings.retry.delivery == "at_least_once",
        )
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
