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
from urllib3.util.retry import Retry

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellConnectionConfigError,
    CallbellError,
    api_error_class,
)
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL, UI_FIELD_BEHAVIOUR
from airflow_provider_callbell.validation import build_send_payload, validate_uuid
from airflow_provider_callbell.version_compat import BaseHook, aget_connection, amask_secret, mask_secret

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import timedelta

    import httpx

    from airflow_provider_callbell.version_compat import Connection

DEFAULT_CHANNEL = "whatsapp"
#: (connect, read) seconds: connecting should be quick; Callbell may take a while to answer a send.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: Answers that mean "nothing was done, try again": the rate limit and a gateway that did not reach
#: Callbell. A 500 or a read timeout may mean the message went out, so they are not retried.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class _ConnParams:
    """The connection, read once per hook and merged with the hook's own arguments."""

    base_url: str
    token: str = field(repr=False)  # never in a log line or a traceback
    from_: str
    channel_uuid: str | None
    timeout: float | tuple[float, float]


class _Response(Protocol):
    """What the sync (``requests``) and async (``httpx``) responses share, as far as the hook reads."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
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
    once per hook, so creating a hook in a DAG file costs nothing. Triggers use the async methods
    (``aget_message_status``), which read the same connection without blocking the event loop and
    map errors the same way.

    .. code-block:: python

        hook = CallbellHook()
        message = hook.send_message(to="+31612345678", content={"text": "Hello!"})
        hook.get_message_status(message["uuid"])["status"]  # 'enqueued', 'sent', 'delivered', ...

    :param callbell_conn_id: the Airflow connection holding the token.
    :param timeout: seconds for connecting and for each answer, or a ``(connect, read)`` pair;
        overrides the connection's ``timeout`` extra.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.callbell_conn_id = callbell_conn_id
        self.timeout = timeout

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
        """Offer the extras as form fields (for Airflow versions without declarative ``conn-fields``)."""
        from wtforms import DecimalField, StringField
        from wtforms.validators import NumberRange, Optional

        return {
            name: (
                DecimalField(spec["label"], validators=[Optional(), NumberRange(min=0)])
                if "number" in spec["schema"]["type"]
                else StringField(spec["label"], description=spec["description"])
            )
            for name, spec in CONN_FIELDS.items()
        }

    # -- Connection and session, made on first use ------------------------------------------------

    @cached_property
    def _conn_params(self) -> _ConnParams:
        conn = self.get_connection(self.callbell_conn_id)
        params = self._merge_conn_params(conn, conn.extra_dejson)
        mask_secret(params.token)
        return params

    async def _aconn_params(self) -> _ConnParams:
        """``_conn_params`` for async code: same merge, same cache, no blocking call on the event loop."""
        if "_conn_params" not in self.__dict__:
            conn, extras = await aget_connection(self, self.callbell_conn_id)
            params = self._merge_conn_params(conn, extras)
            await amask_secret(params.token)
            self.__dict__["_conn_params"] = params
        return self._conn_params

    def _merge_conn_params(self, conn: Connection, extras: Mapping[str, Any]) -> _ConnParams:
        """The hook's arguments first, then the connection's extras, then the defaults."""
        token = conn.password
        if not token:
            raise CallbellConnectionConfigError(
                f"Connection {self.callbell_conn_id!r} has no API token: set its password to the API "
                "key made in Callbell's dashboard"
            )

        def extra(name: str) -> Any:
            # The Airflow 2 UI stored extras as "extra__callbell__<name>"; accept both spellings.
            value = extras.get(name, extras.get(f"extra__{self.conn_type}__{name}"))
            return None if value == "" else value

        timeout = self.timeout if self.timeout is not None else extra("timeout")
        return _ConnParams(
            base_url=_base_url(self.callbell_conn_id, conn.host, conn.port, conn.schema),
            token=token,
            from_=extra("from") or DEFAULT_CHANNEL,
            channel_uuid=extra("channel_uuid"),
            timeout=DEFAULT_TIMEOUT if timeout is None else _timeout(timeout),
        )

    @cached_property
    def session(self) -> requests.Session:
        """The one ``requests.Session`` of this hook: pooled connections, auth and retries."""
        session = requests.Session()
        session.headers.update(_headers(self._conn_params.token))
        retry = Retry(
            total=3,
            connect=3,  # the request never reached Callbell: always safe
            read=0,  # the request may have been acted on: never resend
            status=3,
            other=0,
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POST too: the statuses above mean nothing was done
            backoff_factor=0.5,
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer is mapped to a typed error by _request
        )
        adapter = HTTPAdapter(max_retries=retry)
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
        params_ = self._conn_params
        try:
            response = self.session.request(
                method,
                params_.base_url + path,
                json=json,
                params=params,
                timeout=params_.timeout,
                allow_redirects=False,  # a redirect must not carry the token elsewhere
            )
        except requests.RequestException as err:
            raise _no_answer(endpoint, err) from None
        return self._decode(endpoint, response)

    async def _arequest(self, method: str, path: str) -> Any:
        """``_request`` for async code (triggers), over ``httpx``: same URL, headers, timeout and errors.

        It does not retry: a trigger polls again at its own pace, and decides what to retry with
        :attr:`CallbellAPIError.is_transient`. One short-lived client per call, because a trigger
        asks once per poll interval and a client must not outlive the event loop it was made on.
        """
        import httpx

        endpoint = f"{method} {path}"
        params_ = await self._aconn_params()
        async with httpx.AsyncClient(
            headers=_headers(params_.token),
            timeout=_httpx_timeout(params_.timeout),
            follow_redirects=False,  # a redirect must not carry the token elsewhere
        ) as client:
            try:
                response = await client.request(method, params_.base_url + path)
            except httpx.HTTPError as err:
                raise _no_answer(endpoint, err) from None
        return self._decode(endpoint, response)

    def _decode(self, endpoint: str, response: _Response) -> Any:
        """Return the JSON body of an answer, or raise the typed error for it; both transports use it."""
        status = response.status_code
        self.log.debug("%s answered %s in %.0f ms", endpoint, status, response.elapsed.total_seconds() * 1000)
        if not 200 <= status < 300:
            raise api_error_class(status)(
                _reason(status), status_code=status, endpoint=endpoint, body=response.text
            )
        if status == 204 or not response.content:
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            raise CallbellAPIError(
                "expected a JSON answer", status_code=status, endpoint=endpoint, body=response.text
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

    # -- The API ----------------------------------------------------------------------------------

    def send_message(
        self,
        to: str | None = None,
        type: str = "text",
        content: Mapping[str, Any] | str | None = None,
        *,
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
    ) -> dict[str, Any]:
        """Validate one message, enqueue it with ``POST /messages/send`` and return Callbell's ``message``.

        ``from_`` and ``channel_uuid`` default to the connection's extras. The result holds ``uuid``
        and ``status`` (``enqueued``), plus ``contact``/``conversation`` when ``fields`` asks for them.

        :raises CallbellValidationError: before any request, naming the field at fault.
        :raises CallbellAPIError: (or a subclass) when Callbell refuses the message.
        """
        conn = self._conn_params
        payload = build_send_payload(
            to,
            type,
            content,
            from_=from_ if from_ is not None else conn.from_,
            bsuid=bsuid,
            channel_uuid=channel_uuid if channel_uuid is not None else conn.channel_uuid,
            template_uuid=template_uuid,
            optin_contact=optin_contact,
            template_values=template_values,
            assigned_user=assigned_user,
            team_uuid=team_uuid,
            fields=fields,
            bot_status=bot_status,
            metadata=metadata,
        )
        endpoint = "POST /messages/send"
        message = self._get_object(self._request("POST", "/messages/send", json=payload), "message", endpoint)
        if not isinstance(message.get("uuid"), str):
            raise CallbellAPIError("the answer's message has no 'uuid'", endpoint=endpoint, body=str(message))
        self.log.info(
            "Callbell enqueued %s message %s to %s via %s",
            payload["type"],
            message["uuid"],
            payload.get("to", payload.get("bsuid")),
            payload["from"],
        )
        return message

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


def _httpx_timeout(timeout: float | tuple[float, float]) -> httpx.Timeout:
    import httpx

    if isinstance(timeout, tuple):
        connect, read = timeout
        return httpx.Timeout(read, connect=connect)
    return httpx.Timeout(timeout)


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


def _timeout(value: Any) -> float | tuple[float, float]:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return (float(value[0]), float(value[1]))
        raise CallbellConnectionConfigError(f"timeout must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise CallbellConnectionConfigError(f"timeout must be a positive number of seconds, got {value!r}")
    return seconds


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
