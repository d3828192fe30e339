"""The Callbell hook: one authenticated HTTP session per hook, one method per API call."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from urllib3.exceptions import NewConnectionError

from airflow_provider_callbell.bulk import (
    DEFAULT_MAX_RPS,
    MAX_WORKERS,
    compact,
    default_workers,
    failure_record,
    send_spooled,
    spool_messages,
)
from airflow_provider_callbell.exceptions import (
    BODY_EXCERPT_CHARS,
    CallbellAPIError,
    CallbellConnectionConfigError,
    CallbellError,
    CallbellInvalidResponseError,
    CallbellRateLimitError,
    CallbellValidationError,
    api_error_class,
)
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL, UI_FIELD_BEHAVIOUR
from airflow_provider_callbell.message_status import MESSAGE_STATUSES
from airflow_provider_callbell.ratelimit import RateGate
from airflow_provider_callbell.replies import parse_created_at
from airflow_provider_callbell.retry import RetryPolicy, parse_retry_after
from airflow_provider_callbell.transport import (
    ACCEPT_ENCODING,
    MAX_BODY_BYTES,
    WATCHDOG,
    BodyTooLargeError,
    BoundedDecoder,
    DeadlineAdapter,
    UnsupportedEncodingError,
    iter_capped,
    redact,
)
from airflow_provider_callbell.validation import (
    DEFAULT_CHANNEL,
    build_send_payload,
    message_fields,
    validate_phone,
    validate_uuid,
)
from airflow_provider_callbell.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AirflowNotFoundException,
    BaseHook,
    aget_connection,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
    from datetime import timedelta

    import httpx
    from requests.structures import CaseInsensitiveDict
    from typing_extensions import Unpack

    from airflow_provider_callbell.bulk import BulkProgress
    from airflow_provider_callbell.validation import MessageFields, MessageOptions, SendMessagePayload
    from airflow_provider_callbell.version_compat import Connection

#: (connect, read) seconds: connecting should be quick; Callbell may take a while to answer a send.
#: Their sum is the deadline of each attempt, from connecting to the last byte of the answer.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: The most pages a listing reads; Callbell's accounts have a handful.
MAX_PAGES = 1000


@dataclass(frozen=True)
class _ConnParams:
    """The connection, read once per hook and merged with the hook's own arguments."""

    base_url: str
    token: str = field(repr=False)  # never in a log line or a traceback
    from_: str
    channel_uuid: str | None
    timeout: tuple[float, float]
    retry: RetryPolicy


class _Response(Protocol):
    """What the sync (``requests``) and async (``httpx``) responses share, as far as the hook reads."""

    @property
    def status_code(self) -> int: ...
    @property
    def encoding(self) -> str | None: ...
    @property
    def headers(self) -> CaseInsensitiveDict[str] | httpx.Headers: ...
    @property
    def elapsed(self) -> timedelta: ...


class CallbellHook(BaseHook):
    """
    Talk to the Callbell REST API with the API token of an Airflow connection.

    The connection's password is the API token. Its host is an optional base URL (default
    ``https://api.callbell.eu/v1``), completed by its port and schema; plain ``http://`` is accepted
    only for loopback addresses, so a local sandbox works and a typo cannot send the token in clear
    text. Extras: ``from`` (default channel type, ``whatsapp`` when unset), ``channel_uuid`` (default
    sending channel), the timeouts and the retry policy (see ``docs/connection.md``). A missing or
    broken connection raises :class:`~airflow_provider_callbell.exceptions.CallbellConnectionConfigError`
    on first use, which fails the task without retries and says how to fix the connection.

    Nothing happens in ``__init__``: the connection is read and the HTTP session built on first use,
    once per hook, so creating a hook in a DAG file costs nothing.

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
    default_conn_name = "callbell_default"
    conn_type = "callbell"
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
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Offer the extras as form fields, for Airflow before 3.2 (3.2+ reads ``conn-fields``).

        Each field follows its ``conn-fields`` schema type. Airflow accepts only ``StringField``,
        ``IntegerField``, ``PasswordField`` and ``BooleanField`` here and drops the whole connection
        type for any other class, so a ``number`` (seconds, which may be fractional) is a text field
        that must hold a decimal number. Airflow 2.x renders the form with Flask-AppBuilder, so there
        the fields get its Bootstrap widget and translatable labels, as the official providers' do.
        """
        from wtforms import IntegerField, StringField

        # any_of, not its alias AnyOf: Airflow 3.0/3.1's API server reads the choices through a mock of it.
        from wtforms.validators import NumberRange, Optional, Regexp, any_of

        label: Callable[[str], Any] = str
        widget: dict[str, Any] = {}
        if not AIRFLOW_V_3_0_PLUS:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext

            label = lazy_gettext
            widget = {"widget": BS3TextFieldWidget()}

        def form_field(spec: Mapping[str, Any]) -> Any:
            kind = spec["schema"]["type"][0]
            args = (label(spec["label"]),)
            kwargs = {"description": spec["description"], "default": spec["schema"].get("default"), **widget}
            if kind == "integer":
                return IntegerField(*args, validators=[Optional(), NumberRange(min=0)], **kwargs)
            if kind == "number":
                decimal = Regexp(r"^\s*\d+(\.\d+)?\s*$", message="Enter a number such as 10 or 2.5")
                return StringField(*args, validators=[Optional(), decimal], **kwargs)
            choices = [value for value in spec["schema"].get("enum", []) if value is not None]
            return StringField(*args, validators=[Optional(), any_of(choices)] if choices else [], **kwargs)

        return {name: form_field(spec) for name, spec in CONN_FIELDS.items()}

    # -- Connection and session, made on first use ------------------------------------------------

    @cached_property
    def _conn_params(self) -> _ConnParams:
        try:
            conn = self.get_connection(self.callbell_conn_id)
        except AirflowNotFoundException:
            raise _missing_connection(self.callbell_conn_id) from None
        return self._merge_conn_params(conn, conn.extra_dejson)

    async def _aconn_params(self) -> _ConnParams:
        """``_conn_params`` for async code: same merge, same cache, no blocking call on the event loop."""
        if "_conn_params" not in self.__dict__:
            try:
                conn, extras = await aget_connection(self, self.callbell_conn_id)
            except AirflowNotFoundException:
                raise _missing_connection(self.callbell_conn_id) from None
            self.__dict__["_conn_params"] = self._merge_conn_params(conn, extras)
        return self._conn_params

    def _merge_conn_params(self, conn: Connection, extras: Mapping[str, Any]) -> _ConnParams:
        """The hook's arguments first, then the connection's extras, then the defaults.

        Every problem found here is a :class:`CallbellConnectionConfigError` that names the
        connection and says how to fix it; it fails the task without retries. Airflow registers the
        password with its secrets masker when it reads the connection.
        """
        conn_id = self.callbell_conn_id
        # A token pasted from a file often ends in a line break; it is never part of the token.
        token = (conn.password or "").strip()
        if not token:
            raise CallbellConnectionConfigError(
                f'Connection {conn_id!r} has no API token: set its password ("API token" in the '
                f"Connections UI) to the API key made in Callbell's dashboard, or {_how_to_define(conn_id)}"
            )
        if not (token.isascii() and token.isprintable()) or " " in token:
            # Checked here, because HTTP would refuse the header with an error quoting the token.
            raise CallbellConnectionConfigError(
                f"Connection {conn_id!r}: the API token holds a space, a line break or a non-ASCII "
                "character, which no Callbell API key has; paste the key from Callbell's dashboard "
                'into its password ("API token" in the Connections UI) again'
            )
        # The Airflow 2 UI stored extras as "extra__callbell__<name>"; accept both spellings, and
        # treat a field left empty in the form (stored as "" or null) as unset.
        prefix = f"extra__{self.conn_type}__"
        extra = {k.removeprefix(prefix): v for k, v in extras.items() if v not in ("", None)}
        try:
            timeout = _timeouts(None, extra)
            retry = RetryPolicy.from_extras(extra) if self.retry_policy is None else self.retry_policy
        except CallbellConnectionConfigError as err:
            raise CallbellConnectionConfigError(
                f'Connection {conn_id!r}: {err}; fix it in the Connections UI or in the "extra" JSON '
                f"of the connection (e.g. in {_env_var(conn_id)})"
            ) from None
        return _ConnParams(
            base_url=_base_url(conn_id, conn.host, conn.port, conn.schema),
            token=token,
            from_=extra.get("from") or DEFAULT_CHANNEL,
            channel_uuid=extra.get("channel_uuid"),
            timeout=timeout if self.timeout is None else _timeouts(self.timeout, {}),
            retry=retry,
        )

    @cached_property
    def _gate(self) -> RateGate:
        """When each request may start: spacing during a bulk send, and the shared pause after a 429."""
        retry = self._conn_params.retry
        return RateGate(clock=retry.clock, sleep=retry.sleep)

    @cached_property
    def session(self) -> requests.Session:
        """The one ``requests.Session`` of this hook: pooled connections, auth and retries.

        Its pool keeps up to :data:`~airflow_provider_callbell.bulk.MAX_WORKERS` connections, so
        that every worker of a bulk send reuses one instead of opening a new one per message. Its
        adapter gives every attempt a deadline (``transport.DeadlineAdapter``).

        The environment's proxy settings (``HTTPS_PROXY``, ``NO_PROXY``, ...) and CA bundle
        (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) are read once, here, for the base URL, which
        is fixed per hook; ``requests`` would otherwise read them on every call. A ``.netrc`` is
        never read: it could replace the token's header.
        """
        base_url = self._conn_params.base_url
        session = requests.Session()
        session.headers.update(_headers(self._conn_params.token))
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(base_url)
        session.verify = _ca_bundle() or True
        adapter = DeadlineAdapter(
            pool_maxsize=MAX_WORKERS,
            max_retries=self._conn_params.retry.to_urllib3(log=self.log.warning, gate=self._gate),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def get_conn(self) -> requests.Session:
        """Return the HTTP session (Airflow's conventional accessor)."""
        return self.session

    # -- The one place that does HTTP -------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call Callbell and return the decoded JSON body (``None`` for an empty answer).

        Every error becomes a :class:`CallbellAPIError` subclass carrying the status code, the
        endpoint and a short, redacted body excerpt, never the token or the request headers.
        Each attempt ends within the connect timeout plus the read timeout (see
        ``transport.Watchdog``).
        """
        endpoint = f"{method} {path}"
        conn = self._conn_params
        session = self.session
        self._gate.acquire()
        error: CallbellAPIError | None = None
        with WATCHDOG.watch(sum(conn.timeout)) as deadlines:
            try:
                response = session.request(
                    method,
                    conn.base_url + path,
                    json=json,
                    params=params,
                    timeout=conn.timeout,
                    allow_redirects=False,  # a redirect must not carry the token elsewhere
                    stream=True,  # so that an oversized answer is refused, not read into memory
                )
                try:
                    body = _read_capped(response)
                finally:
                    response.close()
            except requests.exceptions.ContentDecodingError:
                error = CallbellInvalidResponseError(
                    "corrupt compressed answer", status_code=response.status_code, endpoint=endpoint
                )
            except requests.RequestException as err:
                error = self._no_answer(endpoint, err, maybe_acted_on=_may_have_reached_callbell(err))
            except BodyTooLargeError as err:
                error = self._too_large(endpoint, err.status_code, err)
        # Raised here, outside the except blocks, so that no exception keeps the request (and its
        # headers) in its __context__.
        if deadlines.expired:
            raise self._out_of_time(endpoint)
        if error is not None:
            raise error
        return self._decode(endpoint, response, body)

    async def _arequest(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """``_request`` for async code (triggers), over ``httpx``: same URL, headers, timeout, deadline,
        body cap, decoding and errors.

        It does not retry: a trigger polls again at its own pace, and decides what to retry with
        :attr:`CallbellAPIError.is_transient`. The whole attempt runs under ``asyncio.wait_for``
        with the connect timeout plus the read timeout. The hook keeps one client (see
        :meth:`aclose`) for every call made on the same event loop.
        """
        import httpx

        endpoint = f"{method} {path}"
        conn = await self._aconn_params()
        client = await self._aclient(conn)
        error: CallbellAPIError | None = None
        try:
            response, body = await asyncio.wait_for(
                _aread(client, method, conn.base_url + path, params), timeout=sum(conn.timeout)
            )
        except asyncio.TimeoutError:
            error = self._out_of_time(endpoint)
        except httpx.HTTPError as err:
            error = self._no_answer(endpoint, err)
        except BodyTooLargeError as err:
            error = self._too_large(endpoint, err.status_code, err)
        except UnsupportedEncodingError as err:
            error = CallbellInvalidResponseError(str(err), endpoint=endpoint)
        if error is not None:
            raise error  # outside the except blocks: no __context__ holding the request
        return self._decode(endpoint, response, body)

    async def _aclient(self, conn: _ConnParams) -> httpx.AsyncClient:
        """The hook's ``httpx.AsyncClient``, made on first use on this event loop.

        A client belongs to the loop it was made on, so another loop (a second ``asyncio.run``) gets
        a new one. Its TLS context is built once per process in a worker thread
        (:func:`_ssl_context`): building one reads the CA bundle, which would stall the triggerer's
        event loop for every deferred task.
        """
        import httpx

        loop = asyncio.get_running_loop()
        made = self.__dict__.get("_async_client")
        if made is not None and made[0] is loop:
            client: httpx.AsyncClient = made[1]
            return client
        connect, read = conn.timeout
        client = httpx.AsyncClient(
            headers=_headers(conn.token),
            timeout=httpx.Timeout(read, connect=connect),
            follow_redirects=False,  # a redirect must not carry the token elsewhere
            verify=await _ssl_context(),
        )
        self.__dict__["_async_client"] = (loop, client)
        return client

    async def aclose(self) -> None:
        """Close the async client of :meth:`aget_message_status`; triggers call it when they end."""
        made = self.__dict__.pop("_async_client", None)
        if made is not None:
            await made[1].aclose()

    def _decode(self, endpoint: str, response: _Response, body: bytes) -> Any:
        """Return the JSON body of an answer, or raise the typed error for it; both transports use it."""
        status = response.status_code
        self.log.debug("%s answered %s in %.0f ms", endpoint, status, response.elapsed.total_seconds() * 1000)
        text = self._redact(_text(body, response.encoding))
        if not 200 <= status < 300:
            error = api_error_class(status)(
                _reason(status, self._conn_params.base_url), status_code=status, endpoint=endpoint, body=text
            )
            if isinstance(error, CallbellRateLimitError):
                error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise error
        if status == 204 or not body:
            return None
        try:
            return json.loads(body)  # JSON is UTF-8 (RFC 8259), whatever charset the answer claims
        except (ValueError, RecursionError):  # not JSON; nested too deep to parse
            pass
        raise CallbellInvalidResponseError(
            "expected a JSON answer", status_code=status, endpoint=endpoint, body=text
        )

    def _redact(self, text: str) -> str:
        """``text`` from a server without the token or any ``Authorization`` value, before it is kept."""
        return redact(text, self._conn_params.token)

    def _invalid(self, reason: str, endpoint: str, data: Any) -> CallbellInvalidResponseError:
        """The error for a decoded answer of the wrong shape, with a redacted excerpt of it."""
        return CallbellInvalidResponseError(reason, endpoint=endpoint, body=self._redact(_excerpt(data)))

    def _no_answer(self, endpoint: str, err: Exception, *, maybe_acted_on: bool = True) -> CallbellAPIError:
        """The error for a request that got no HTTP answer (``status_code`` None, so it is transient).

        ``maybe_acted_on`` is ``False`` only when the request is known not to have reached Callbell.
        """
        detail = self._redact(f"{type(err).__name__}: {err}")
        return CallbellAPIError(
            f"no answer from Callbell ({detail})", endpoint=endpoint, maybe_acted_on=maybe_acted_on
        )

    def _out_of_time(self, endpoint: str) -> CallbellAPIError:
        """The error for an attempt stopped at its deadline; transient, like no answer at all."""
        connect, read = self._conn_params.timeout
        return CallbellAPIError(
            f"no complete answer from Callbell within {connect + read:g} s (connect timeout {connect:g} s "
            f"+ read timeout {read:g} s)",
            endpoint=endpoint,
        )

    def _too_large(self, endpoint: str, status: int | None, err: BodyTooLargeError) -> CallbellAPIError:
        return CallbellInvalidResponseError(
            f"the answer is larger than {MAX_BODY_BYTES} bytes, which no Callbell endpoint sends",
            status_code=status,
            endpoint=endpoint,
            body=self._redact(err.head.decode("utf-8", errors="replace")),
        )

    def _get_object(self, data: Any, key: str, endpoint: str) -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            raise self._invalid(f"expected a JSON object with {key!r}", endpoint, data)
        return value

    def _status_message(self, data: Any, path: str) -> dict[str, Any]:
        """The ``message`` of a status answer, which must hold one of Callbell's statuses."""
        endpoint = f"GET {path}"
        message = self._get_object(data, "message", endpoint)
        if message.get("status") not in MESSAGE_STATUSES:
            raise self._invalid(
                f"expected a message with a status ({', '.join(MESSAGE_STATUSES)})", endpoint, message
            )
        return message

    def _get_all_pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Follow ``meta.page``/``meta.pages`` until every page of ``key`` items is read.

        Reading ends at the last page, at an empty page, or with
        :class:`~airflow_provider_callbell.exceptions.CallbellInvalidResponseError` when a page
        repeats the one before (a server that ignores ``page``) or after :data:`MAX_PAGES` pages.
        """
        endpoint = f"GET {path}"
        items: list[dict[str, Any]] = []
        previous: list[Any] | None = None
        for page in range(1, MAX_PAGES + 1):
            data = self._request("GET", path, params={**(params or {}), "page": page})
            batch = data.get(key) if isinstance(data, dict) else None
            if not isinstance(batch, list):
                raise self._invalid(f"expected a JSON object with a list {key!r}", endpoint, data)
            if batch and batch == previous:
                raise self._invalid(
                    f"page {page} repeats page {page - 1}; the listing never ends", endpoint, data
                )
            items.extend(batch)
            meta = data.get("meta")
            pages = meta.get("pages", page) if isinstance(meta, dict) else page
            if not isinstance(pages, int) or page >= pages or not batch:
                return items
            previous = batch
        raise CallbellInvalidResponseError(
            f"more than {MAX_PAGES} pages of {key!r}; no Callbell account has that many", endpoint=endpoint
        )

    def _build_payload(self, **fields: Unpack[MessageFields]) -> SendMessagePayload:
        """Validate one message into its JSON body, with the connection's channel defaults."""
        conn = self._conn_params
        if fields.get("from_") is None:
            fields["from_"] = conn.from_  # type: ignore[typeddict-item]  # checked by build_send_payload
        if fields.get("channel_uuid") is None:
            fields["channel_uuid"] = conn.channel_uuid
        return build_send_payload(**fields)

    def _build_message(self, message: Mapping[str, Any]) -> SendMessagePayload:
        return self._build_payload(**message_fields(message))

    def _post_message(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one validated body and return Callbell's message object, which must hold a uuid."""
        endpoint = "POST /messages/send"
        message = self._get_object(self._request("POST", "/messages/send", json=payload), "message", endpoint)
        if not isinstance(message.get("uuid"), str):
            raise self._invalid("the answer's message has no 'uuid'", endpoint, message)
        return message

    def _send_spooled(self, line: bytes) -> dict[str, Any]:
        """One bulk worker's send: a compact result for success or failure, never an exception."""
        payload = json.loads(line)
        try:
            message = self._post_message(payload)
        except CallbellError as err:
            self.log.debug(
                "Callbell refused a message to %s: %s", payload.get("to", payload.get("bsuid")), err
            )
            return failure_record(err, payload)
        except Exception as err:  # a bug or an answer nobody foresaw: this message's failure, not the send's
            unexpected = CallbellAPIError(
                self._redact(f"unexpected {type(err).__name__}: {err}"), endpoint="POST /messages/send"
            )
            self.log.warning(
                "Callbell: a message to %s failed: %s", payload.get("to", payload.get("bsuid")), unexpected
            )
            return failure_record(unexpected, payload)
        self.log.debug(
            "Callbell enqueued message %s to %s", message["uuid"], payload.get("to", payload.get("bsuid"))
        )
        return compact(message)

    # -- The API ----------------------------------------------------------------------------------

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
            Callbell's 300 per account. Several tasks sending at once must share the account's limit.
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
                self._send_spooled,
                workers=workers,
                progress=progress,
                log=self.log,
                stop=stop,
                resend_unknown=self._conn_params.retry.delivery == "at_least_once",
            )

    def get_message_status(self, uuid: str) -> dict[str, Any]:
        """Return the ``message`` of ``GET /messages/status/:uuid`` (``status``, ``messageStatusPayload``)."""
        path = _status_path(uuid)
        return self._status_message(self._request("GET", path), path)

    async def aget_message_status(self, uuid: str) -> dict[str, Any]:
        """:meth:`get_message_status` for async code (triggers); errors are raised, never retried."""
        path = _status_path(uuid)
        return self._status_message(await self._arequest("GET", path), path)

    def delete_message(self, uuid: str) -> None:
        """Delete a message in Callbell (not on the customer's phone) with ``DELETE /messages/:uuid``."""
        self._request("DELETE", f"/messages/{quote(validate_uuid('uuid', uuid))}")

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

    # Reading replies: the contact of a phone number, then its conversation, newest first.

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
        return self._contact(data, f"GET {path}")

    async def aget_contact_by_phone(
        self, phone: str, channel_uuid: str | None = None
    ) -> dict[str, Any] | None:
        """:meth:`get_contact_by_phone` for async code (triggers); errors are raised, never retried."""
        await self._aconn_params()
        path, params = self._contact_by_phone_request(phone, channel_uuid)
        try:
            data = await self._arequest("GET", path, params=params)
        except CallbellAPIError as err:
            if self._no_such_contact(err):
                return None
            raise
        return self._contact(data, f"GET {path}")

    def _no_such_contact(self, err: CallbellAPIError) -> bool:
        """Whether a contact look-up's error means "no contact": a ``404`` from Callbell's ``/v1`` root.

        A ``404`` from a base URL without ``/v1`` is a configuration mistake, which must fail rather
        than look like a person who has not written yet.
        """
        return err.status_code == 404 and urlsplit(self._conn_params.base_url).path.endswith("/v1")

    def _contact_by_phone_request(
        self, phone: str, channel_uuid: str | None
    ) -> tuple[str, dict[str, str] | None]:
        path = f"/contacts/phone/{quote(validate_phone('phone', phone), safe='')}"
        channel = channel_uuid or self._conn_params.channel_uuid
        return path, None if channel is None else {"channel_uuid": channel}

    def _contact(self, data: Any, endpoint: str) -> dict[str, Any]:
        """The ``contact`` of an answer; ``GET /contacts/:uuid``'s documented example wraps it in a list."""
        value = data.get("contact") if isinstance(data, dict) else None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, dict) or not isinstance(value.get("uuid"), str):
            raise self._invalid("expected a JSON object with a 'contact' holding a uuid", endpoint, data)
        return value

    def _messages_page(self, cut: _MessagesCut, data: Any, page: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of a conversation, checked: what to yield, and whether it is the last to read.

        The callers read at most :data:`MAX_PAGES` pages, as :meth:`_get_all_pages` does, so that a
        server whose pages never end cannot keep a caller reading forever.
        """
        batch = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(batch, list) or not all(isinstance(message, dict) for message in batch):
            raise self._invalid("expected a JSON object with a list 'messages'", cut.endpoint, data)
        meta = data.get("meta")
        return cut.page(batch, meta.get("pages") if isinstance(meta, dict) else None, page)

    def get_contact(self, uuid: str) -> dict[str, Any]:
        """Return the contact ``uuid`` (``GET /contacts/:uuid``)."""
        path = f"/contacts/{quote(validate_uuid('uuid', uuid, 'contact'))}"
        return self._contact(self._request("GET", path), f"GET {path}")

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
        path, cut = _contact_messages_request(contact_uuid, stop_at_uuid, since, max_pages)

        def pages() -> Iterator[dict[str, Any]]:
            for page in range(1, MAX_PAGES + 1):
                data = self._request("GET", path, params={"page": page})
                messages, last = self._messages_page(cut, data, page)
                yield from messages
                if last:
                    return
            raise _endless(cut.endpoint)

        return pages()

    def alist_contact_messages(
        self,
        contact_uuid: str,
        *,
        stop_at_uuid: str | None = None,
        since: datetime | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """:meth:`list_contact_messages` for async code (triggers): ``async for message in ...``."""
        path, cut = _contact_messages_request(contact_uuid, stop_at_uuid, since, max_pages)

        async def pages() -> AsyncIterator[dict[str, Any]]:
            for page in range(1, MAX_PAGES + 1):
                data = await self._arequest("GET", path, params={"page": page})
                messages, last = self._messages_page(cut, data, page)
                for message in messages:
                    yield message
                if last:
                    return
            raise _endless(cut.endpoint)

        return pages()

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``GET /auth/me``; the answer feeds the Connections UI's Test button."""
        try:
            me = self._request("GET", "/auth/me")
        except CallbellError as err:
            return False, str(err)
        email = me.get("user_email") if isinstance(me, dict) else None
        if not email:
            return False, "GET /auth/me answered without a user_email: is the base URL Callbell's API?"
        return True, self._redact(f"Connected to Callbell as {email}")


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
    }


def _status_path(uuid: str) -> str:
    return f"/messages/status/{quote(validate_uuid('uuid', uuid))}"


def _may_have_reached_callbell(err: requests.RequestException) -> bool:
    """Whether a request that got no answer may still have been carried out by Callbell.

    Only a failure to connect (refused, unresolved, TLS handshake, connect timeout) proves that
    nothing was sent; so does a spent retry budget, which ``RetryPolicy`` reaches only through answers
    that mean "nothing was done" (``429``, ``502``-``504``) or connection failures. A read timeout or
    a connection dropped after sending leaves the message's fate unknown.
    """
    if isinstance(
        err, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.RetryError)
    ):
        return False
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return not isinstance(err, requests.ConnectionError) or not isinstance(reason, NewConnectionError)


def _env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _how_to_define(conn_id: str) -> str:
    """The two ways to define a Callbell connection from a shell, for error messages."""
    return (
        f"define it with `airflow connections add {conn_id} --conn-type callbell --conn-password "
        f"<API token>` or with the environment variable {_env_var(conn_id)}="
        """'{"conn_type": "callbell", "password": "<API token>"}'"""
    )


def _missing_connection(conn_id: str) -> CallbellConnectionConfigError:
    """The error for a connection id Airflow does not know, with the way to create it.

    On Airflow 3 it also says why a connection stored in the database may look missing: code that
    runs outside a task (a Python shell, a script) does not reach the database through the task SDK.
    """
    message = f"Connection {conn_id!r} is not defined: {_how_to_define(conn_id)}"
    if AIRFLOW_V_3_0_PLUS:
        message += (
            " (outside a task, Airflow 3 reads connections from environment variables and secrets "
            "backends only, not from its database)"
        )
    return CallbellConnectionConfigError(message)


#: What the connection's ``schema`` may hold besides a path: the URL scheme, as in Airflow's HTTP hook.
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _MessagesCut:
    """Where a read of a conversation (newest first) stops: one rule for the sync and async paths."""

    endpoint: str
    stop_at_uuid: str | None
    since: datetime | None  # whole seconds, like Callbell's createdAt
    max_pages: int | None

    def page(self, batch: list[dict[str, Any]], pages: Any, page: int) -> tuple[list[dict[str, Any]], bool]:
        """The messages of one page to yield, and whether this is the last page to read.

        ``pages`` is the answer's ``meta.pages`` (``None`` when it has none).
        """
        kept: list[dict[str, Any]] = []
        for message in batch:
            if self.since is not None and _created_before(message, self.since):
                return kept, True
            kept.append(message)
            if self.stop_at_uuid is not None and message.get("uuid") == self.stop_at_uuid:
                return kept, True
        # Older docs show no meta (stop on an empty page); newer ones give meta.pages.
        last = not batch or (isinstance(pages, int) and page >= pages)
        return kept, last or (self.max_pages is not None and page >= self.max_pages)


def _contact_messages_request(
    contact_uuid: str, stop_at_uuid: str | None, since: datetime | None, max_pages: int | None
) -> tuple[str, _MessagesCut]:
    path = f"/contacts/{quote(validate_uuid('contact_uuid', contact_uuid, 'contact'))}/messages"
    if stop_at_uuid is not None:
        validate_uuid("stop_at_uuid", stop_at_uuid)
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise CallbellValidationError(f"since must be a timezone-aware datetime, got {since!r}")
    if max_pages is not None and (
        isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1
    ):
        raise CallbellValidationError(f"max_pages must be a whole number >= 1, got {max_pages!r}")
    floor = None if since is None else since.astimezone(timezone.utc).replace(microsecond=0)
    return path, _MessagesCut(f"GET {path}", stop_at_uuid, floor, max_pages)


def _endless(endpoint: str) -> CallbellInvalidResponseError:
    return CallbellInvalidResponseError(
        f"more than {MAX_PAGES} pages of 'messages'; no conversation has that many", endpoint=endpoint
    )


def _created_before(message: Mapping[str, Any], since: datetime) -> bool:
    created = parse_created_at(message.get("createdAt"))
    return created is not None and created < since


def _base_url(conn_id: str, host: str | None, port: int | None, schema: str | None) -> str:
    """Build the API root from the connection's host, port and schema, and check that it is safe.

    The host may be a whole base URL (``https://api.callbell.eu/v1``) or a bare host name; the
    connection's port and schema fill in what the host leaves out. ``schema`` is read the two ways
    Airflow fills it: ``http``/``https`` is the URL scheme (as for Airflow's HTTP connections, and
    ``--conn-schema http``); anything else is the path that Airflow's URI parsing puts there
    (``callbell://:TOKEN@api.callbell.eu/v1`` gives schema ``v1``). A value given twice that
    disagrees (two ports, two schemes, two paths) is refused rather than one silently winning.

    Plain http is accepted only for loopback addresses, so a local sandbox works and a typo cannot
    send the token in clear text; a loopback host without a scheme is refused with the ``http://``
    form to use, as guessing https there fails later with a TLS error that explains nothing.
    """
    given = (host or "").strip() or DEFAULT_BASE_URL

    def refuse(problem: str) -> CallbellConnectionConfigError:
        return CallbellConnectionConfigError(
            f'Connection {conn_id!r}: {problem}; set its host ("Base URL" in the Connections UI) to an '
            f"http(s) URL such as {DEFAULT_BASE_URL!r}"
        )

    if "@" in given:  # user info: never print it, it may hold the token
        raise refuse(
            "the host holds user info ('user:password@'), which is never sent as Callbell's token "
            "and must not be in a URL; put the API token in the connection's password"
        )
    try:
        parts = urlsplit(given if "://" in given else f"//{given}")
        hostname, host_port = parts.hostname, parts.port
    except ValueError:
        raise refuse(f"the host {given!r} is not a URL") from None
    scheme, path = parts.scheme.lower(), parts.path.rstrip("/")
    if parts.query or parts.fragment or not hostname or (scheme and scheme not in _SCHEMES):
        raise refuse(f"the host {given!r} is not an http(s) base URL")
    if schema and schema.lower() in _SCHEMES:
        if scheme and scheme != schema.lower():
            raise refuse(f"the host {given!r} says {scheme!r} but the schema field says {schema!r}")
        scheme = schema.lower()
    elif schema:
        if path:
            raise refuse(f"the host {given!r} has a path and the schema field adds {schema!r}")
        path = "/" + schema.strip("/")
    if port:
        if host_port is not None and host_port != port:
            raise refuse(f"the host {given!r} says port {host_port} but the port field says {port}")
        host_port = port
    loopback = _is_loopback(hostname)
    if not scheme and loopback:
        raise refuse(
            f"the host {given!r} has no scheme; a local server such as the sandbox is plain http: "
            f"use {urlunsplit(('http', _netloc(hostname, host_port), path, '', ''))!r}"
        )
    scheme = scheme or "https"
    if scheme == "http" and not loopback:
        raise refuse(
            f"the host {given!r} uses plain http, which would send the API token unencrypted; use https "
            "(plain http is accepted only for localhost / 127.0.0.1)"
        )
    if host_port == _DEFAULT_PORTS[scheme]:  # e.g. 443 typed in the form's port field: same URL
        host_port = None
    return urlunsplit((scheme, _netloc(hostname, host_port), path, "", ""))


def _netloc(hostname: str, port: int | None) -> str:
    netloc = f"[{hostname}]" if ":" in hostname else hostname  # an IPv6 address needs its brackets
    return f"{netloc}:{port}" if port else netloc


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise CallbellConnectionConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _timeouts(argument: float | tuple[float, float] | None, extra: Mapping[str, Any]) -> tuple[float, float]:
    """(connect, read): the hook's argument, else the extras, else :data:`DEFAULT_TIMEOUT`."""
    if isinstance(argument, (list, tuple)):
        return _seconds("timeout[0]", argument[0]), _seconds("timeout[1]", argument[1])
    if argument is not None:
        seconds = _seconds("timeout", argument)
        return seconds, seconds
    connect, read = DEFAULT_TIMEOUT
    if "timeout" in extra:
        connect = read = _seconds("extra 'timeout'", extra["timeout"])
    if "connect_timeout" in extra:
        connect = _seconds("extra 'connect_timeout'", extra["connect_timeout"])
    if "read_timeout" in extra:
        read = _seconds("extra 'read_timeout'", extra["read_timeout"])
    return connect, read


def _read_capped(response: requests.Response) -> bytes:
    """The whole (decoded) answer; ``BodyTooLargeError`` past ``MAX_BODY_BYTES``.

    urllib3 inflates a compressed answer a bounded slice per read, so a gzip bomb stops at the cap.
    """
    try:
        return iter_capped(response.iter_content(chunk_size=64 * 1024))
    except BodyTooLargeError as err:
        err.status_code = response.status_code
        raise


async def _aread(
    client: httpx.AsyncClient, method: str, url: str, params: Mapping[str, Any] | None
) -> tuple[httpx.Response, bytes]:
    """One async attempt: the answer and its decoded body, streamed through ``BoundedDecoder``.

    httpx would inflate each network chunk whole (a 64 kB chunk of a gzip bomb is 64 MB), so the
    raw bytes are decoded here, a bounded slice at a time.
    """
    async with client.stream(method, url, params=params) as response:
        decoder = BoundedDecoder(response.headers.get("Content-Encoding"))
        try:
            async for chunk in response.aiter_raw():
                decoder.feed(chunk)
            body = decoder.body()
        except BodyTooLargeError as err:
            err.status_code = response.status_code
            raise
    return response, body


_SSL_CONTEXT: list[ssl.SSLContext] = []
_SSL_CONTEXT_LOCK = threading.Lock()


def _ca_bundle() -> str | None:
    """The CA bundle the environment names for ``requests`` (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``).

    Both transports trust it, so that a deferred sensor in the triggerer reaches a host behind a
    company CA as a send from a worker does (httpx alone would read only ``SSL_CERT_FILE``).
    """
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def _default_ssl_context() -> ssl.SSLContext:
    with _SSL_CONTEXT_LOCK:  # 500 triggers starting at once build it once
        if not _SSL_CONTEXT:
            import ssl

            import httpx

            bundle = _ca_bundle()
            if bundle is None:
                _SSL_CONTEXT.append(httpx.create_ssl_context())
            elif os.path.isdir(bundle):
                _SSL_CONTEXT.append(ssl.create_default_context(capath=bundle))
            else:
                _SSL_CONTEXT.append(ssl.create_default_context(cafile=bundle))
    return _SSL_CONTEXT[0]


async def _ssl_context() -> ssl.SSLContext:
    """The TLS context of the async path, built once per process in a worker thread, off the event loop."""
    return _SSL_CONTEXT[0] if _SSL_CONTEXT else await asyncio.to_thread(_default_ssl_context)


def _text(body: bytes, encoding: str | None) -> str:
    """An answer as text for an error excerpt; an unknown charset (``charset=bogus``) reads as UTF-8."""
    try:
        return body.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _excerpt(data: Any) -> str:
    """A decoded answer as JSON text for an error excerpt."""
    try:
        text = json.dumps(data, default=str)
    except (ValueError, RecursionError):  # nested as deep as the parser allowed: too deep to print
        text = f"<{type(data).__name__} nested too deep to show>"
    return text[:BODY_EXCERPT_CHARS]


def _reason(status: int, base_url: str) -> str:
    if status == 404 and not urlsplit(base_url).path.endswith("/v1"):
        return (
            f"Callbell refused the request: not found; the base URL {base_url!r} does not end with "
            f"/v1, where Callbell's API lives (e.g. {DEFAULT_BASE_URL!r})"
        )
    if status in (401, 403):
        return "Callbell refused the API token; check the password of the Callbell connection"
    if status == 429:
        return "rate limit exceeded (300 requests per second per account)"
    if status >= 500:
        return "Callbell failed to handle the request"
    if 300 <= status < 400:
        return "unexpected redirect; is the connection's base URL right?"
    return "Callbell refused the request"
