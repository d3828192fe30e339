"""The Callbell hook: the connection's settings, an HTTP session and an async client, one method per API call.

The hook reads like Airflow's ``SlackHook``: the Connections UI, the settings read from the
connection (:mod:`~airflow_provider_callbell.connection`), the lifetimes of the sync session and the
async client, then the API. How a request travels and how an answer is read is the transport's
(:mod:`~airflow_provider_callbell.transport`); how a listing is paged is the pager's
(:mod:`~airflow_provider_callbell.paging`).
"""

from __future__ import annotations

import asyncio
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_callbell import answers
from airflow_provider_callbell.bulk import (
    DEFAULT_MAX_RPS,
    MAX_WORKERS,
    default_workers,
    send_line,
    send_spooled,
    spool_messages,
)
from airflow_provider_callbell.connection import (
    CONN_TYPE,
    CallbellSettings,
    connection_form_widgets,
    missing_connection,
    ui_field_behaviour,
)
from airflow_provider_callbell.connection import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from airflow_provider_callbell.exceptions import (
    BODY_EXCERPT_CHARS,
    CallbellAPIError,
    CallbellError,
    CallbellInvalidResponseError,
    CallbellRateLimitError,
    CallbellValidationError,
)
from airflow_provider_callbell.mixins import DEFAULT_CONN_ID
from airflow_provider_callbell.paging import MAX_PAGES as MAX_PAGES
from airflow_provider_callbell.paging import MessagesCut, Pager
from airflow_provider_callbell.ratelimit import RateGate, gate_for
from airflow_provider_callbell.transport import aio, protocol, sync
from airflow_provider_callbell.transport.caps import printable, redact
from airflow_provider_callbell.validation import DEFAULT_CHANNEL as DEFAULT_CHANNEL
from airflow_provider_callbell.validation import (
    build_send_payload,
    message_fields,
    validate_phone,
    validate_uuid,
)
from airflow_provider_callbell.version_compat import AirflowNotFoundException, BaseHook, aget_connection

if TYPE_CHECKING:
    import threading
    from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
    from datetime import datetime

    import requests
    from typing_extensions import Unpack

    from airflow_provider_callbell.bulk import BulkProgress
    from airflow_provider_callbell.retry import RetryPolicy
    from airflow_provider_callbell.validation import MessageFields, MessageOptions, SendMessagePayload
    from airflow_provider_callbell.version_compat import Connection


class CallbellHook(BaseHook):
    """
    Talk to the Callbell REST API with the API token of an Airflow connection.

    The connection's password is the API token. Its host is an optional base URL (default
    ``https://api.callbell.eu/v1``), completed by its port and schema; plain ``http://`` is accepted
    only for loopback addresses, so a local sandbox works and a typo cannot send the token in clear
    text, unless the extra ``allow_plain_http`` allows it (a sandbox on a trusted network; the hook
    then warns). Extras: ``from`` (default channel type, ``whatsapp`` when unset), ``channel_uuid``
    (default sending channel), the timeouts, the retry policy, and ``rate_limit_storage`` (a
    ``limits`` storage URI such as ``redis://redis:6379/1``, where every process using the account
    shares one rate limit and each ``429``'s pause; see ``docs/connection.md``). A missing or
    broken connection raises :class:`~airflow_provider_callbell.exceptions.CallbellConnectionConfigError`
    on first use, which fails the task without retries and says how to fix the connection.

    Nothing happens in ``__init__``: the connection is read on first use and kept, and so are the
    HTTP session of the sync methods and the client of the async ones (one per event loop), so
    creating a hook in a DAG file costs nothing.

    .. code-block:: python

        hook = CallbellHook()
        message = hook.send_message(to="+31612345678", content={"text": "Hello!"})
        hook.get_message_status(message["uuid"])["status"]  # 'enqueued', 'sent', 'delivered', ...

    Each attempt of a request (connecting, sending, the status line, the headers and the whole
    body) ends within the connect timeout plus the read timeout, however slowly a server trickles
    its answer; a retry is a new attempt with the same deadline.

    :param callbell_conn_id: the Airflow connection holding the token.
    :param timeout: seconds, or a ``(connect, read)`` pair; overrides the connection's ``timeout``,
        ``connect_timeout`` and ``read_timeout`` extras. Their sum is the most one attempt of a
        request may take, from connecting to the last byte of the answer (default 5 + 30 s).
    :param retry_policy: how requests are retried; overrides the connection's ``max_retries``,
        ``retry_max_seconds``, ``retry_backoff`` and ``delivery`` extras (see
        :class:`~airflow_provider_callbell.retry.RetryPolicy`).
    """

    conn_name_attr = "callbell_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Callbell"

    def __init__(
        self,
        callbell_conn_id: str = default_conn_name,
        *,
        timeout: float | tuple[float, float] | None = None,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.callbell_conn_id = callbell_conn_id
        self.timeout = timeout
        self.retry_policy = retry_policy

    # -- Connections UI ---------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hide the fields Callbell does not use and call the password what it is: the API token."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Offer the extras as form fields, for Airflow before 3.2 (3.2+ reads ``conn-fields``)."""
        return connection_form_widgets()

    # -- Settings, session and client, made on first use ------------------------------------------

    @cached_property
    def _settings(self) -> CallbellSettings:
        """The connection merged with the hook's arguments, read once (see :class:`CallbellSettings`)."""
        try:
            conn = self.get_connection(self.callbell_conn_id)
        except AirflowNotFoundException:
            raise missing_connection(self.callbell_conn_id) from None
        return self._settings_of(conn, conn.extra_dejson)

    async def _asettings(self) -> CallbellSettings:
        """``_settings`` for async code: same merge, same cache, no blocking call on the event loop."""
        if "_settings" not in self.__dict__:
            try:
                conn, extras = await aget_connection(self, self.callbell_conn_id)
            except AirflowNotFoundException:
                raise missing_connection(self.callbell_conn_id) from None
            self.__dict__["_settings"] = self._settings_of(conn, extras)
        return self._settings

    def _settings_of(self, conn: Connection, extras: Mapping[str, Any]) -> CallbellSettings:
        settings = CallbellSettings.from_connection(
            self.callbell_conn_id, conn, extras, timeout=self.timeout, retry_policy=self.retry_policy
        )
        if settings.allow_plain_http:
            self.log.warning(
                "Callbell connection %r allows plain http (extra allow_plain_http): %s; use it only for a "
                "sandbox on a trusted network",
                self.callbell_conn_id,
                f"the API token travels unencrypted to {settings.base_url}"
                if settings.plain_http_to_network
                else f"unused with {settings.base_url}",
            )
        return settings

    @cached_property
    def _gate(self) -> RateGate:
        """When each request may start: spacing during a bulk send, and the pause after a 429; shared by
        every process of the account when the connection names a ``rate_limit_storage``."""
        retry = self._settings.retry
        return gate_for(self._settings, log=self.log, clock=retry.clock, sleep=retry.sleep)

    async def _agate(self) -> RateGate:
        """``_gate`` for async code: a shared one is made off the event loop (it imports its client)."""
        if "_gate" not in self.__dict__ and (await self._asettings()).rate_limit_storage is not None:
            await asyncio.to_thread(lambda: self._gate)
        return self._gate

    @cached_property
    def session(self) -> requests.Session:
        """The ``requests.Session`` of this hook's sync methods: pooled connections, auth and retries.

        Made on first use and kept; every sync call, and every worker of a bulk send, shares it (see
        :func:`~airflow_provider_callbell.transport.sync.new_session`).
        """
        return sync.new_session(self._settings, log=self.log, gate=self._gate)

    def get_conn(self) -> requests.Session:
        """Return the HTTP session (Airflow's conventional accessor)."""
        return self.session

    async def _aclient(self, settings: CallbellSettings) -> aio.SharedClient:
        """The ``httpx.AsyncClient`` of this hook's async methods on this event loop, taken on first use.

        It is the loop's client for the connection's base URL and timeouts, which every hook of the
        loop with the same ones shares (:func:`~airflow_provider_callbell.transport.aio.acquire_client`)
        until :meth:`aclose`. A client belongs to the loop it was made on, so another loop (a second
        ``asyncio.run``) gets another one.
        """
        loop = asyncio.get_running_loop()
        held = self.__dict__.get("_async_client")
        if held is not None and held[0] is loop:
            client: aio.SharedClient = held[1]
            return client
        if held is not None:  # taken on a loop that has ended: let it go before taking this loop's
            await self.aclose()
        client = await aio.acquire_client(settings)
        self.__dict__["_async_client"] = (loop, client)
        return client

    async def aclose(self) -> None:
        """Let go of the async client of the ``a…`` methods; the last hook using it closes it.

        Triggers call it when they end, cancelled included; call it when done with the ``a…`` methods.
        """
        held = self.__dict__.pop("_async_client", None)
        if held is not None:
            await aio.release_client(*held)

    # -- Requests ---------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call Callbell and return the decoded JSON body, after this request's turn at the rate gate."""
        settings = self._settings
        session = self.session
        self._gate.acquire()
        return sync.send(session, settings, method, path, json=json, params=params, log=self.log)

    async def _arequest(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """``_request`` for async code (triggers), over ``httpx``; it does not retry.

        With a shared rate limit, the request takes its place in the account's window first, and a
        ``429`` pauses the account in every process; neither blocks the event loop.
        """
        settings = await self._asettings()
        gate = await self._agate()
        client = await self._aclient(settings)
        await gate.aacquire()
        try:
            return await aio.send(client, settings, method, path, params=params, log=self.log)
        except CallbellRateLimitError as err:
            await gate.apause(1.0 if err.retry_after is None else err.retry_after)
            raise

    def redact(self, text: str) -> str:
        """``text`` without this connection's token or any ``Authorization`` value, ``***`` instead.

        For text that leaves the provider: the notifier passes every alert through it (an exception's
        text may quote the token).
        """
        return redact(text, self._settings.token)

    def _printable(self, text: str) -> str:
        """``text`` from outside as it may be kept or shown: without the token, control characters escaped."""
        return printable(text, self._settings.token, limit=BODY_EXCERPT_CHARS)

    def _invalid(self, reason: str, endpoint: str, data: Any) -> CallbellInvalidResponseError:
        """The error for a decoded answer of the wrong shape, with a redacted excerpt of it."""
        return protocol.invalid_error(self._settings.token, reason, endpoint, data)

    def _pages(self, path: str, pager: Pager) -> Iterator[dict[str, Any]]:
        """Drive ``pager`` with sync requests: the items of each page, asked for as they are read."""
        while (params := pager.next_params()) is not None:
            yield from pager.read(self._request("GET", path, params=params))

    async def _apages(self, path: str, pager: Pager) -> AsyncIterator[dict[str, Any]]:
        """Drive ``pager`` with async requests."""
        while (params := pager.next_params()) is not None:
            for item in pager.read(await self._arequest("GET", path, params=params)):
                yield item

    # -- Messages ---------------------------------------------------------------------------------

    def _build_payload(self, **fields: Unpack[MessageFields]) -> SendMessagePayload:
        """Validate one message into its JSON body, with the connection's channel defaults."""
        settings = self._settings
        if fields.get("from_") is None:
            fields["from_"] = settings.from_  # type: ignore[typeddict-item]  # checked by build_send_payload
        if fields.get("channel_uuid") is None:
            fields["channel_uuid"] = settings.channel_uuid
        return build_send_payload(**fields)

    def _build_message(self, message: Mapping[str, Any]) -> SendMessagePayload:
        return self._build_payload(**message_fields(message))

    def _post_message(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one validated body and return Callbell's message object, which must hold a uuid."""
        data = self._request("POST", "/messages/send", json=payload)
        return answers.sent_message(data, "POST /messages/send", self._invalid)

    def send_message(self, to: str | None = None, **options: Unpack[MessageOptions]) -> dict[str, Any]:
        """Validate one message, enqueue it with ``POST /messages/send`` and return Callbell's ``message``.

        Takes the fields of :class:`~airflow_provider_callbell.validation.MessageFields`, ``to`` also
        by position, the others by keyword. ``from_`` and ``channel_uuid`` default to the
        connection's extras. The result holds ``uuid`` and ``status`` (``enqueued``), plus
        ``contact``/``conversation`` when ``fields`` asks for them.

        :raises CallbellValidationError: before any request, naming the field at fault.
        :raises CallbellAPIError: (or a subclass) when Callbell refuses the message.
        """
        payload = self._build_payload(to=to, **options)
        message = self._post_message(payload)
        self.log.info(
            "Callbell enqueued %s message %s to %s via %s",
            payload["type"],
            message["uuid"],
            payload.get("to", payload.get("bsuid")),
            payload["from"],
        )
        return message

    def send_messages(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        max_rps: float | None = None,
        max_workers: int | None = None,
        progress: BulkProgress | None = None,
        stop: threading.Event | None = None,
    ) -> list[dict[str, Any]]:
        """Send many messages concurrently at up to ``max_rps``; one result per message, in input order.

        Each message is a mapping of :meth:`send_message`'s parameters (``to``, ``type``,
        ``content``, ``from_`` (or ``from``), ...). ``messages`` may be any iterable, a generator
        included; it is read once, one message at a time, and never held whole in memory.

        Every message is validated before the first one is sent: a first pass validates each one as
        it is read and writes its JSON body to a temporary spool (in memory up to 1 MiB, then an
        anonymous file that the system deletes on close); any invalid message raises before a
        single request. The second pass streams the spool to ``max_workers`` threads sharing this
        hook's session. A ``429`` pauses every worker for its ``Retry-After``, not only the one that
        received it; retries follow the hook's retry policy.

        The result for a message is Callbell's message object (with ``uuid``) when it was enqueued,
        else a failure record ``{"error": "<ExceptionType>: <reason>", "status_code": ..., "to": ...}``
        without ``uuid``, with ``"delivery_unknown": True`` when the message may have gone out all the
        same (a ``500``, no answer after sending). A failure never stops the others: check the results.
        With ``progress``, a message whose delivery is unknown is not sent again by a later attempt
        unless the retry policy's ``delivery`` is ``"at_least_once"``.

        .. code-block:: python

            rows = ({"to": row.phone, "content": {"text": f"Hi {row.name}"}} for row in read_rows())
            results = CallbellHook().send_messages(rows)
            failed = [r for r in results if "error" in r]

        :param messages: the messages, each a mapping of :meth:`send_message`'s parameters.
        :param max_rps: the most requests started per second, across workers; default 285, 95% of
            Callbell's 300 per account. Several tasks sending at once share the account's limit
            through the connection's ``rate_limit_storage``; without it, divide ``max_rps`` between them.
        :param max_workers: concurrent requests (1 to 64); by default enough for answers taking up to
            a quarter of a second to keep ``max_rps`` (at most 32), and never more than the messages.
        :param progress: where the send records which messages went out, so that a later attempt of
            the same work skips them (see :class:`~airflow_provider_callbell.bulk.BulkProgress`).
        :param stop: set it (from another thread or a signal handler) to stop starting messages; those
            in flight finish and reach ``progress``, then :class:`CallbellError` is raised.
        :raises CallbellValidationError: before any request, naming each invalid message's index and field.
        """
        rate = DEFAULT_MAX_RPS if max_rps is None else max_rps
        if max_workers is not None and (
            isinstance(max_workers, bool)
            or not isinstance(max_workers, int)
            or not 1 <= max_workers <= MAX_WORKERS
        ):
            raise CallbellValidationError(
                f"max_workers must be a whole number from 1 to {MAX_WORKERS}, got {max_workers!r}"
            )
        self.session  # noqa: B018  # read the connection and build the session before threads share them
        # limited() checks max_rps before the input is read; no request goes out while validating.
        with self._gate.limited(rate), spool_messages(messages, self._build_message) as spool:
            workers = min(max_workers or default_workers(rate), max(spool.count, 1))
            self.log.info(
                "Callbell: %d messages validated; sending at up to %g per second with %d workers",
                spool.count,
                rate,
                workers,
            )
            return send_spooled(
                spool,
                partial(send_line, post=self._post_message, redact=self._printable, log=self.log),
                workers=workers,
                progress=progress,
                log=self.log,
                stop=stop,
                resend_unknown=self._settings.retry.delivery == "at_least_once",
                per_second=rate,
            )

    def get_message_status(self, uuid: str) -> dict[str, Any]:
        """Return the ``message`` of ``GET /messages/status/:uuid`` (``status``, ``messageStatusPayload``)."""
        path = _status_path(uuid)
        return answers.status_message(self._request("GET", path), f"GET {path}", self._invalid)

    async def aget_message_status(self, uuid: str) -> dict[str, Any]:
        """:meth:`get_message_status` for async code (triggers); errors are raised, never retried."""
        path = _status_path(uuid)
        return answers.status_message(await self._arequest("GET", path), f"GET {path}", self._invalid)

    def delete_message(self, uuid: str) -> None:
        """Delete a message in Callbell (not on the customer's phone) with ``DELETE /messages/:uuid``."""
        self._request("DELETE", f"/messages/{quote(validate_uuid('uuid', uuid))}")

    # -- Listings ---------------------------------------------------------------------------------

    def _get_all_pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of every page of a listing (see :class:`~airflow_provider_callbell.paging.Pager`)."""
        return list(self._pages(path, Pager(f"GET {path}", key, invalid=self._invalid, params=params)))

    def list_templates(self) -> list[dict[str, Any]]:
        """Return every template of the account, all pages; only ``approved`` ones can be sent."""
        return self._get_all_pages("/templates", "templates")

    def list_channels(self, type: str | None = None, active: bool | None = None) -> list[dict[str, Any]]:
        """Return the account's channels, all pages, optionally only one ``type`` or active ones."""
        params: dict[str, Any] = {}
        if type is not None:
            params["type"] = type
        if active is not None:
            params["active"] = "true" if active else "false"
        return self._get_all_pages("/channels", "channels", params)

    # -- Contacts and conversations: the contact of a phone number, then its messages, newest first --

    def get_contact_by_phone(self, phone: str, channel_uuid: str | None = None) -> dict[str, Any] | None:
        """Return the contact of ``phone`` (``GET /contacts/phone/:number``), or ``None`` if Callbell has none.

        Callbell looks on the main WhatsApp channel, or on ``channel_uuid`` (default: the connection's
        ``channel_uuid`` extra, the channel the provider sends from). A contact exists once a message
        went either way. The result holds ``uuid``, ``name``, ``phoneNumber``, ``conversationHref``, ...

        :raises CallbellValidationError: before any request, for a ``phone`` that is not a phone number.
        """
        path, params = self._contact_by_phone_request(phone, channel_uuid)
        try:
            data = self._request("GET", path, params=params)
        except CallbellAPIError as err:
            if self._no_such_contact(err):
                return None
            raise
        return answers.contact(data, f"GET {path}", self._invalid)

    async def aget_contact_by_phone(
        self, phone: str, channel_uuid: str | None = None
    ) -> dict[str, Any] | None:
        """:meth:`get_contact_by_phone` for async code (triggers); errors are raised, never retried."""
        await self._asettings()
        path, params = self._contact_by_phone_request(phone, channel_uuid)
        try:
            data = await self._arequest("GET", path, params=params)
        except CallbellAPIError as err:
            if self._no_such_contact(err):
                return None
            raise
        return answers.contact(data, f"GET {path}", self._invalid)

    def _contact_by_phone_request(
        self, phone: str, channel_uuid: str | None
    ) -> tuple[str, dict[str, str] | None]:
        path = f"/contacts/phone/{quote(validate_phone('phone', phone), safe='')}"
        channel = channel_uuid or self._settings.channel_uuid
        return path, None if channel is None else {"channel_uuid": channel}

    def _no_such_contact(self, err: CallbellAPIError) -> bool:
        """Whether a contact look-up's error means "no contact": a ``404`` from Callbell's ``/v1`` root.

        A ``404`` from a base URL without ``/v1`` is a configuration mistake, which must fail rather
        than look like a person who has not written yet.
        """
        return err.status_code == 404 and self._settings.at_api_root

    def get_contact(self, uuid: str) -> dict[str, Any]:
        """Return the contact ``uuid`` (``GET /contacts/:uuid``)."""
        path = f"/contacts/{quote(validate_uuid('uuid', uuid, 'contact'))}"
        return answers.contact(self._request("GET", path), f"GET {path}", self._invalid)

    def list_contact_messages(
        self,
        contact_uuid: str,
        *,
        stop_at_uuid: str | None = None,
        since: datetime | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the contact's messages newest first, reading ``GET /contacts/:uuid/messages`` page by page.

        Pages are requested only as the caller iterates, and no more once the answer is known:
        the message whose uuid is ``stop_at_uuid`` is the last one yielded (typically the question
        whose answers are wanted), and messages created before ``since`` (compared in whole seconds,
        as Callbell stamps them) are not yielded. So a poll for new answers usually reads one page.
        Each message holds ``text``, ``status`` (``sent``, ``received`` or ``note``), ``createdAt``,
        ``from``, ``to``, ``channel``, and ``uuid`` for the ones sent (answers have none).

        :param contact_uuid: the contact, e.g. from :meth:`get_contact_by_phone`.
        :param stop_at_uuid: stop after the message with this uuid.
        :param since: stop before the first message older than this (a timezone-aware time).
        :param max_pages: read at most this many pages.
        :raises CallbellValidationError: at the call, before any request, for a bad argument.
        """
        return self._pages(*self._conversation(contact_uuid, stop_at_uuid, since, max_pages))

    def alist_contact_messages(
        self,
        contact_uuid: str,
        *,
        stop_at_uuid: str | None = None,
        since: datetime | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """:meth:`list_contact_messages` for async code (triggers): ``async for message in ...``."""
        return self._apages(*self._conversation(contact_uuid, stop_at_uuid, since, max_pages))

    def _conversation(
        self, contact_uuid: str, stop_at_uuid: str | None, since: datetime | None, max_pages: int | None
    ) -> tuple[str, Pager]:
        """The path and the pager of a conversation's read; the arguments are checked here, at the call."""
        path = f"/contacts/{quote(validate_uuid('contact_uuid', contact_uuid, 'contact'))}/messages"
        cut = MessagesCut.checked(stop_at_uuid, since, max_pages)
        return path, Pager(f"GET {path}", "messages", invalid=self._invalid, cut=cut, what="conversation")

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``GET /auth/me``; the answer feeds the Connections UI's Test button."""
        try:
            me = self._request("GET", "/auth/me")
        except CallbellError as err:
            return False, str(err)
        email = me.get("user_email") if isinstance(me, dict) else None
        if not email:
            return False, "GET /auth/me answered without a user_email: is the base URL Callbell's API?"
        return True, self._printable(f"Connected to Callbell as {email}")


def _status_path(uuid: str) -> str:
    return f"/messages/status/{quote(validate_uuid('uuid', uuid))}"
