"""The Callbell hook: one authenticated HTTP session per hook, one method per API call."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

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
    CallbellAPIError,
    CallbellConnectionConfigError,
    CallbellError,
    CallbellRateLimitError,
    CallbellValidationError,
    api_error_class,
)
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL, UI_FIELD_BEHAVIOUR
from airflow_provider_callbell.ratelimit import RateGate
from airflow_provider_callbell.retry import RetryPolicy
from airflow_provider_callbell.validation import build_send_payload, message_fields, validate_uuid
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, BaseHook, aget_connection

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping
    from datetime import timedelta

    import httpx
    from requests.structures import CaseInsensitiveDict
    from typing_extensions import Unpack

    from airflow_provider_callbell.bulk import BulkProgress
    from airflow_provider_callbell.validation import MessageFields, MessageOptions, SendMessagePayload
    from airflow_provider_callbell.version_compat import Connection

DEFAULT_CHANNEL = "whatsapp"
#: (connect, read) seconds: connecting should be quick; Callbell may take a while to answer a send.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: The largest answer read; Callbell's are a few hundred bytes, anything bigger is not Callbell's API.
MAX_BODY_BYTES = 1 << 20


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
    ``https://api.callbell.eu/v1``); plain ``http://`` is accepted only for loopback addresses, so a
    local sandbox works and a typo cannot send the token in clear text. Extras: ``from`` (default
    channel type, ``whatsapp`` when unset), ``channel_uuid`` (default sending channel) and ``timeout``
    (seconds).

    Nothing happens in ``__init__``: the connection is read and the HTTP session built on first use,
    once per hook, so creating a hook in a DAG file costs nothing.

    .. code-block:: python

        hook = CallbellHook()
        message = hook.send_message(to="+31612345678", content={"text": "Hello!"})
        hook.get_message_status(message["uuid"])["status"]  # 'enqueued', 'sent', 'delivered', ...

    :param callbell_conn_id: the Airflow connection holding the token.
    :param timeout: seconds for connecting and for each answer, or a ``(connect, read)`` pair;
        overrides the connection's ``timeout``, ``connect_timeout`` and ``read_timeout`` extras.
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
        conn = self.get_connection(self.callbell_conn_id)
        return self._merge_conn_params(conn, conn.extra_dejson)

    async def _aconn_params(self) -> _ConnParams:
        """``_conn_params`` for async code: same merge, same cache, no blocking call on the event loop."""
        if "_conn_params" not in self.__dict__:
            conn, extras = await aget_connection(self, self.callbell_conn_id)
            self.__dict__["_conn_params"] = self._merge_conn_params(conn, extras)
        return self._conn_params

    def _merge_conn_params(self, conn: Connection, extras: Mapping[str, Any]) -> _ConnParams:
        """The hook's arguments first, then the connection's extras, then the defaults.

        Airflow registers the password with its secrets masker when it reads the connection.
        """
        token = conn.password
        if not token:
            raise CallbellConnectionConfigError(
                f"Connection {self.callbell_conn_id!r} has no API token: set its password to the API "
                "key made in Callbell's dashboard"
            )
        # The Airflow 2 UI stored extras as "extra__callbell__<name>"; accept both spellings, and
        # treat a field left empty in the form as unset.
        prefix = f"extra__{self.conn_type}__"
        extra = {k.removeprefix(prefix): v for k, v in extras.items() if v not in ("", None)}
        return _ConnParams(
            base_url=_base_url(self.callbell_conn_id, conn.host, conn.port, conn.schema),
            token=token,
            from_=extra.get("from") or DEFAULT_CHANNEL,
            channel_uuid=extra.get("channel_uuid"),
            timeout=_timeouts(self.timeout, extra),
            retry=self.retry_policy or RetryPolicy.from_extras(extra),
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
        that every worker of a bulk send reuses one instead of opening a new one per message.
        """
        session = requests.Session()
        session.headers.update(_headers(self._conn_params.token))
        adapter = HTTPAdapter(
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
        endpoint and a short body excerpt, never the token or the request headers.
        """
        endpoint = f"{method} {path}"
        conn = self._conn_params
        session = self.session
        self._gate.acquire()
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
            body = _read_capped(response, endpoint)
        except requests.RequestException as err:
            raise _no_answer(endpoint, err) from None
        return self._decode(endpoint, response, body)

    async def _arequest(self, method: str, path: str) -> Any:
        """``_request`` for async code (triggers), over ``httpx``: same URL, headers, timeout and errors.

        It does not retry: a trigger polls again at its own pace, and decides what to retry with
        :attr:`CallbellAPIError.is_transient`. One short-lived client per call, because a trigger
        asks once per poll interval and a client must not outlive the event loop it was made on.
        """
        import httpx

        endpoint = f"{method} {path}"
        conn = await self._aconn_params()
        connect, read = conn.timeout
        async with httpx.AsyncClient(
            headers=_headers(conn.token),
            timeout=httpx.Timeout(read, connect=connect),
            follow_redirects=False,  # a redirect must not carry the token elsewhere
        ) as client:
            try:
                response = await client.request(method, conn.base_url + path)
            except httpx.HTTPError as err:
                raise _no_answer(endpoint, err) from None
        return self._decode(endpoint, response, response.content)

    def _decode(self, endpoint: str, response: _Response, body: bytes) -> Any:
        """Return the JSON body of an answer, or raise the typed error for it; both transports use it."""
        status = response.status_code
        self.log.debug("%s answered %s in %.0f ms", endpoint, status, response.elapsed.total_seconds() * 1000)
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if not 200 <= status < 300:
            error = api_error_class(status)(_reason(status), status_code=status, endpoint=endpoint, body=text)
            if isinstance(error, CallbellRateLimitError):
                error.retry_after = _retry_after(response.headers.get("Retry-After"))
            raise error
        if status == 204 or not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise CallbellAPIError(
                "expected a JSON answer", status_code=status, endpoint=endpoint, body=text
            ) from None

    def _get_object(self, data: Any, key: str, endpoint: str) -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            raise CallbellAPIError(f"expected a JSON object with {key!r}", endpoint=endpoint, body=str(data))
        return value

    def _get_all_pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Follow ``meta.page``/``meta.pages`` until every page of ``key`` items is read."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._request("GET", path, params={**(params or {}), "page": page})
            batch = data.get(key) if isinstance(data, dict) else None
            if not isinstance(batch, list):
                raise CallbellAPIError(
                    f"expected a JSON object with a list {key!r}", endpoint=f"GET {path}", body=str(data)
                )
            items.extend(batch)
            pages = (data.get("meta") or {}).get("pages", page)
            if not isinstance(pages, int) or page >= pages or not batch:
                return items
            page += 1

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
            raise CallbellAPIError("the answer's message has no 'uuid'", endpoint=endpoint, body=str(message))
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
        without ``uuid``. A failure never stops the others: check the results.

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
                spool, self._send_spooled, workers=workers, progress=progress, log=self.log, stop=stop
            )

    def get_message_status(self, uuid: str) -> dict[str, Any]:
        """Return the ``message`` of ``GET /messages/status/:uuid`` (``status``, ``messageStatusPayload``)."""
        path = _status_path(uuid)
        return self._get_object(self._request("GET", path), "message", f"GET {path}")

    async def aget_message_status(self, uuid: str) -> dict[str, Any]:
        """:meth:`get_message_status` for async code (triggers); errors are raised, never retried."""
        path = _status_path(uuid)
        return self._get_object(await self._arequest("GET", path), "message", f"GET {path}")

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

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``GET /auth/me``; the answer feeds the Connections UI's Test button."""
        try:
            me = self._request("GET", "/auth/me")
        except CallbellError as err:
            return False, str(err)
        email = me.get("user_email") if isinstance(me, dict) else None
        if not email:
            return False, "GET /auth/me answered without a user_email: is the base URL Callbell's API?"
        return True, f"Connected to Callbell as {email}"


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def _status_path(uuid: str) -> str:
    return f"/messages/status/{quote(validate_uuid('uuid', uuid))}"


def _no_answer(endpoint: str, err: Exception) -> CallbellAPIError:
    """The error for a request that got no HTTP answer (``status_code`` None, so it is transient)."""
    return CallbellAPIError(f"no answer from Callbell ({type(err).__name__}: {err})", endpoint=endpoint)


def _base_url(conn_id: str, host: str | None, port: int | None, schema: str | None) -> str:
    """Build the API root from the connection, refusing plain http to anything but loopback."""
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:  # host given as a name, e.g. from a connection URI
        host = f"https://{host}{f':{port}' if port else ''}{f'/{schema}' if schema else ''}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbellConnectionConfigError(
            f"Connection {conn_id!r}: host must be an http(s) base URL such as {DEFAULT_BASE_URL!r}, "
            f"got {host!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CallbellConnectionConfigError(
            f"Connection {conn_id!r}: host {host!r} uses plain http, which would send the API token "
            "unencrypted; use https (plain http is accepted only for localhost / 127.0.0.1)"
        )
    return host.rstrip("/")


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
        connect = read = _seconds("timeout", extra["timeout"])
    if "connect_timeout" in extra:
        connect = _seconds("connect_timeout", extra["connect_timeout"])
    if "read_timeout" in extra:
        read = _seconds("read_timeout", extra["read_timeout"])
    return connect, read


def _read_capped(response: requests.Response, endpoint: str) -> bytes:
    """Read the whole answer, refusing one larger than :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            response.close()
            raise CallbellAPIError(
                f"the answer is larger than {MAX_BODY_BYTES} bytes, which no Callbell endpoint sends",
                status_code=response.status_code,
                endpoint=endpoint,
                body=b"".join(chunks)[:500].decode("utf-8", errors="replace"),
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    try:
        return Retry().parse_retry_after(value)
    except InvalidHeader:
        return None


def _reason(status: int) -> str:
    if status in (401, 403):
        return "Callbell refused the API token; check the password of the Callbell connection"
    if status == 429:
        return "rate limit exceeded (300 requests per second per account)"
    if status >= 500:
        return "Callbell failed to handle the request"
    if 300 <= status < 400:
        return "unexpected redirect; is the connection's base URL right?"
    return "Callbell refused the request"
