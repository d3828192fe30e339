"""Airflow's own REST API, as the Human-in-the-loop bridge uses it: read a request, submit an answer.

:class:`AirflowAPIHook` reads the ``airflow_api`` connection (the API server's base URL, an Airflow
user's login and password), fetches a token from ``POST /auth/token`` when it first needs one and
keeps it in memory only (never in a trigger's kwargs, an XCom or a log line), and calls the public
``/api/v2`` endpoints. It follows the Callbell transport's rules: plain http only to a loopback host
(or where the connection's ``allow_plain_http`` extra says so), no redirects, every attempt within the
connect plus read timeout, answers capped at a megabyte, every server text redacted of the password
and the token before an error keeps it. Nothing is retried here: the operator and its trigger poll
again at their own pace and decide with
:attr:`~airflow_provider_callbell.exceptions.CallbellAPIError.is_transient`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from airflow_provider_callbell.connection import _flag, env_var, is_loopback, netloc, timeouts
from airflow_provider_callbell.exceptions import AirflowAPIError, CallbellConnectionConfigError
from airflow_provider_callbell.transport.caps import (
    ACCEPT_ENCODING,
    BodyTooLargeError,
    BoundedDecoder,
    UnsupportedEncodingError,
    join_capped,
    redact,
)
from airflow_provider_callbell.version_compat import (
    AirflowNotFoundException,
    BaseHook,
    aget_connection,
    amask_secret,
    mask_secret,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx
    import requests

    from airflow_provider_callbell.version_compat import Connection

#: The connection the HITL bridge reads when it is given no ``airflow_api_conn_id``.
DEFAULT_AIRFLOW_API_CONN_ID = "airflow_api"
#: What a token from ``POST /auth/token`` may hold: a JWT's characters (base64url, and base64's ``+/=``).
_JWT_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")
_EXAMPLE = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class AirflowAPISettings:
    """The ``airflow_api`` connection, checked: base URL, user, password (kept out of ``repr``), timeouts."""

    base_url: str
    username: str
    password: str = field(repr=False)
    timeout: tuple[float, float]
    allow_plain_http: bool = False

    @property
    def budget(self) -> float:
        return sum(self.timeout)

    @classmethod
    def from_connection(cls, conn_id: str, conn: Connection, extras: Mapping[str, Any]) -> AirflowAPISettings:
        """Check the connection; every problem is a :class:`CallbellConnectionConfigError` naming it."""
        username, password = (conn.login or "").strip(), (conn.password or "").strip()
        if not username or not password:
            raise CallbellConnectionConfigError(
                f"Connection {conn_id!r} needs the login and password of the Airflow user that answers "
                f"Human-in-the-loop requests; {how_to_define(conn_id)}"
            )
        try:
            # Strict, as the Callbell connection's: junk is an error, never a silent "false" (or "true").
            allow_plain_http = _flag("allow_plain_http", extras.get("allow_plain_http", False))
            timeout = timeouts(None, {k: v for k, v in extras.items() if v not in ("", None)})
        except CallbellConnectionConfigError as err:
            raise CallbellConnectionConfigError(f"Connection {conn_id!r}: {err}") from None
        return cls(
            api_base_url(conn_id, conn.host, conn.port, conn.schema, allow_plain_http),
            username,
            password,
            timeout,
            allow_plain_http,
        )

    def warn_if_plain_http(self, conn_id: str, log: Any) -> None:
        """The Callbell hook's warning, for this connection: ``allow_plain_http`` is for trusted networks only."""
        if not self.allow_plain_http:
            return
        parts = urlsplit(self.base_url)
        plain = parts.scheme == "http" and not is_loopback(parts.hostname or "")
        log.warning(
            "Airflow API connection %r allows plain http (extra allow_plain_http): %s; use it only on a "
            "trusted network",
            conn_id,
            f"the Airflow password and token travel unencrypted to {self.base_url}"
            if plain
            else f"unused with {self.base_url}",
        )


def how_to_define(conn_id: str) -> str:
    """The two ways to define the Airflow API connection from a shell, for error messages."""
    return (
        f"define it with `airflow connections add {conn_id} --conn-type http --conn-host {_EXAMPLE} "
        f"--conn-login <user> --conn-password <password>` or with the environment variable "
        f"""{env_var(conn_id)}='{{"conn_type": "http", "host": "{_EXAMPLE}", "login": "<user>", """
        f""""password": "<password>"}}'"""
    )


def api_base_url(
    conn_id: str, host: str | None, port: int | None, schema: str | None, allow_plain_http: bool
) -> str:
    """The API server's base URL (scheme, host, port, optional path prefix), checked as safe to send a password to.

    The host may be a whole URL (``http://127.0.0.1:8080``) or a bare name completed by the port and
    by ``schema`` when it is ``http``/``https``; without a scheme a loopback host means http and any
    other https. Plain http to another host is refused unless the extra ``allow_plain_http`` is true (a
    private network the operator trusts), because the password and the token would travel in clear.
    """

    def refuse(problem: str) -> CallbellConnectionConfigError:
        return CallbellConnectionConfigError(
            f"Connection {conn_id!r}: {problem}; set its host to the API server's base URL with scheme "
            f"and port, without /api/v2, such as {_EXAMPLE!r}"
        )

    given = (host or "").strip()
    if not given:
        raise refuse("it has no host")
    if "@" in given:  # user info: never print it
        raise refuse("the host holds user info ('user:password@'); put them in the login and password")
    try:
        parts = urlsplit(given if "://" in given else f"//{given}")
        hostname, host_port = parts.hostname, parts.port
    except ValueError:
        raise refuse(f"the host {given!r} is not a URL") from None
    scheme, path = parts.scheme.lower(), parts.path.rstrip("/")
    if parts.query or parts.fragment or not hostname or scheme not in ("", "http", "https"):
        raise refuse(f"the host {given!r} is not an http(s) base URL")
    if path.endswith(("/api/v2", "/api/v1")):
        raise refuse(f"the host {given!r} ends with the API's path")
    if schema and schema.lower() in ("http", "https") and not scheme:
        scheme = schema.lower()
    host_port = port or host_port
    scheme = scheme or ("http" if is_loopback(hostname) else "https")
    if scheme == "http" and not is_loopback(hostname) and not allow_plain_http:
        raise refuse(
            f"the host {given!r} uses plain http, which would send the Airflow password and token "
            "unencrypted; use https, or set the extra allow_plain_http to true for a network you trust"
        )
    return urlunsplit((scheme, netloc(hostname, host_port), path, "", ""))


class AirflowAPIHook(BaseHook):
    """
    Read and answer Human-in-the-loop requests through Airflow's public REST API (Airflow 3.1+).

    The connection (``airflow_api`` by default, any type, ``http`` is fine) holds the API server's
    base URL in its host and the login and password of the Airflow user who answers; the hook
    exchanges them for a token at ``POST /auth/token`` on first use and again when the API refuses
    it (an expired token). ``__init__`` only stores the connection id.

    .. code-block:: python

        hook = AirflowAPIHook()
        detail = hook.get_hitl_detail("nightly_report", run_id, "approve")
        hook.submit_hitl_response("nightly_report", run_id, "approve", chosen_options=["Approve"])

    :param airflow_api_conn_id: the connection to the API server.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = DEFAULT_AIRFLOW_API_CONN_ID
    conn_type = "http"
    hook_name = "Airflow REST API (Callbell HITL bridge)"

    def __init__(self, airflow_api_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id
        self._token: str | None = None

    # -- Settings, session, client -----------------------------------------------------------------

    @cached_property
    def settings(self) -> AirflowAPISettings:
        try:
            conn = self.get_connection(self.airflow_api_conn_id)
        except AirflowNotFoundException:
            raise self._missing() from None
        settings = AirflowAPISettings.from_connection(self.airflow_api_conn_id, conn, conn.extra_dejson)
        settings.warn_if_plain_http(self.airflow_api_conn_id, self.log)
        return settings

    async def asettings(self) -> AirflowAPISettings:
        """:attr:`settings` read without blocking the event loop (in a trigger)."""
        if "settings" not in self.__dict__:
            try:
                conn, extras = await aget_connection(self, self.airflow_api_conn_id)
            except AirflowNotFoundException:
                raise self._missing() from None
            settings = AirflowAPISettings.from_connection(self.airflow_api_conn_id, conn, extras)
            settings.warn_if_plain_http(self.airflow_api_conn_id, self.log)
            self.__dict__["settings"] = settings
        return self.settings

    def _missing(self) -> CallbellConnectionConfigError:
        return CallbellConnectionConfigError(
            f"Connection {self.airflow_api_conn_id!r} (Airflow's REST API) is not defined: "
            f"{how_to_define(self.airflow_api_conn_id)}"
        )

    @cached_property
    def session(self) -> requests.Session:
        """A ``requests`` session whose every attempt has a deadline; no retries, no ``.netrc``, no redirects."""
        import requests

        from airflow_provider_callbell.transport._urllib3 import DeadlineAdapter

        session = requests.Session()
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(self.settings.base_url)
        from airflow_provider_callbell.transport.tls import ca_bundle

        session.verify = ca_bundle() or True
        adapter = DeadlineAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    async def _aclient(self, settings: AirflowAPISettings) -> httpx.AsyncClient:
        client: httpx.AsyncClient | None = self.__dict__.get("_client")
        if client is None:
            import httpx

            from airflow_provider_callbell.transport.tls import ssl_context

            connect, read = settings.timeout
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(read, connect=connect),
                follow_redirects=False,
                verify=await ssl_context(),
                trust_env=False,
            )
            self.__dict__["_client"] = client
        return client

    async def aclose(self) -> None:
        """Close the async client; the trigger calls it when its run ends."""
        client = self.__dict__.pop("_client", None)
        if client is not None:
            await client.aclose()

    # -- The API -------------------------------------------------------------------------------------

    def get_hitl_detail(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, Any] | None:
        """The HITL request of a task instance (with its ``task_instance``), or ``None`` while there is none."""
        try:
            detail = self._call("GET", hitl_path(dag_id, run_id, task_id, map_index))
        except AirflowAPIError as err:
            if err.status_code == 404:
                return None
            raise
        return _object(detail, "GET hitlDetails", self.settings, self._token)

    async def aget_hitl_detail(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, Any] | None:
        """:meth:`get_hitl_detail` for async code."""
        try:
            detail = await self._acall("GET", hitl_path(dag_id, run_id, task_id, map_index))
        except AirflowAPIError as err:
            if err.status_code == 404:
                return None
            raise
        return _object(detail, "GET hitlDetails", self.settings, self._token)

    def submit_hitl_response(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        *,
        chosen_options: list[str],
        params_input: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer the request as the connection's user (``PATCH .../hitlDetails``); Airflow's answer.

        Raises :class:`~airflow_provider_callbell.exceptions.AirflowAPIError` with Airflow's status:
        ``409`` already answered, ``403`` this user may not answer, ``400`` an option it does not offer.
        """
        body = {"chosen_options": chosen_options, "params_input": dict(params_input or {})}
        answer = self._call("PATCH", hitl_path(dag_id, run_id, task_id, map_index), json=body)
        return _object(answer, "PATCH hitlDetails", self.settings, self._token)

    # -- One request, sync and async ---------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Mapping[str, Any] | None = None) -> Any:
        """An authorized call; a ``401`` (expired token) fetches a new token once and asks again."""
        for attempt in (1, 2):
            if self._token is None:
                self._token = _token_of(self._send("POST", "/auth/token", json=self._login()), self.settings)
                mask_secret(self._token)  # no log line shows it, Airflow's own included
            try:
                return self._send(method, path, json=json, token=self._token)
            except AirflowAPIError as err:
                if err.status_code != 401 or attempt == 2:
                    raise
                self._token = None
        raise AssertionError("unreachable")

    async def _acall(self, method: str, path: str, *, json: Mapping[str, Any] | None = None) -> Any:
        settings = await self.asettings()
        for attempt in (1, 2):
            if self._token is None:
                self._token = _token_of(
                    await self._asend("POST", "/auth/token", json=self._login()), settings
                )
                await amask_secret(self._token)
            try:
                return await self._asend(method, path, json=json, token=self._token)
            except AirflowAPIError as err:
                if err.status_code != 401 or attempt == 2:
                    raise
                self._token = None
        raise AssertionError("unreachable")

    def _login(self) -> dict[str, str]:
        return {"username": self.settings.username, "password": self.settings.password}

    def _send(
        self, method: str, path: str, *, json: Mapping[str, Any] | None, token: str | None = None
    ) -> Any:
        import requests

        from airflow_provider_callbell.transport.deadline import WATCHDOG

        settings, endpoint = self.settings, f"{method} {_endpoint(path)}"
        error: AirflowAPIError | None = None
        with WATCHDOG.watch(settings.budget) as deadlines:
            try:
                response = self.session.request(
                    method,
                    settings.base_url + path,
                    json=json,
                    headers=_headers(token),
                    timeout=settings.timeout,
                    allow_redirects=False,  # a redirect must not carry the password or token elsewhere
                    stream=True,
                )
                try:
                    body = join_capped(response.iter_content(chunk_size=64 * 1024), response.status_code)
                finally:
                    response.close()
            except requests.RequestException as err:
                error = _no_answer(endpoint, err, settings, token)
            except BodyTooLargeError as err:
                error = AirflowAPIError(
                    "the answer is larger than a megabyte", status_code=err.status_code, endpoint=endpoint
                )
        if deadlines.expired:
            raise AirflowAPIError(f"no complete answer within {settings.budget:g} s", endpoint=endpoint)
        if error is not None:
            raise error  # outside the except blocks: no __context__ holding the request
        return _decode(endpoint, response.status_code, body, settings, token)

    async def _asend(
        self, method: str, path: str, *, json: Mapping[str, Any] | None, token: str | None = None
    ) -> Any:
        import httpx

        settings, endpoint = await self.asettings(), f"{method} {_endpoint(path)}"
        client = await self._aclient(settings)

        async def read() -> tuple[int, bytes]:
            request = client.build_request(
                method, settings.base_url + path, json=json, headers=_headers(token)
            )
            response = await client.send(request, stream=True)
            try:
                decoder = BoundedDecoder(response.headers.get("Content-Encoding"), response.status_code)
                async for chunk in response.aiter_raw():
                    decoder.feed(chunk)
            finally:
                await response.aclose()
            return response.status_code, decoder.body()

        error: AirflowAPIError | None = None
        try:
            status, body = await asyncio.wait_for(read(), timeout=settings.budget)
        except asyncio.TimeoutError:
            error = AirflowAPIError(f"no complete answer within {settings.budget:g} s", endpoint=endpoint)
        except httpx.HTTPError as err:
            error = _no_answer(endpoint, err, settings, token)
        except (BodyTooLargeError, UnsupportedEncodingError) as err:
            error = AirflowAPIError(
                f"unusable answer: {redact(str(err), settings.password, token)}", endpoint=endpoint
            )
        if error is not None:
            raise error
        return _decode(endpoint, status, body, settings, token)


def hitl_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The public endpoint of one task instance's HITL request; every id is quoted (run ids hold ``:``, ``+``)."""
    ids = "/".join(quote(str(part), safe="") for part in (task_id, map_index))
    return f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ids}/hitlDetails"


def _endpoint(path: str) -> str:
    """The endpoint as errors name it: the path without the ids, which may be long."""
    return "/auth/token" if path == "/auth/token" else "/api/v2/dags/.../hitlDetails"


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _no_answer(
    endpoint: str, err: Exception, settings: AirflowAPISettings, token: str | None
) -> AirflowAPIError:
    detail = redact(f"{type(err).__name__}: {err}", settings.password, token)
    return AirflowAPIError(
        f"no answer from the Airflow API server at {settings.base_url} ({detail})", endpoint=endpoint
    )


def _decode(endpoint: str, status: int, body: bytes, settings: AirflowAPISettings, token: str | None) -> Any:
    # No body is kept from /auth/token: FastAPI's 422 echoes the login JSON-escaped, and a password
    # holding '"', '\\' or non-ASCII would escape a plain replace.
    text = (
        ""
        if endpoint.endswith("/auth/token")
        else redact(body.decode("utf-8", errors="replace"), settings.password, token)
    )
    if not 200 <= status < 300:
        raise AirflowAPIError(
            _reason(status, endpoint, settings), status_code=status, endpoint=endpoint, body=text
        )
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        raise AirflowAPIError(
            "expected a JSON answer", status_code=status, endpoint=endpoint, body=text
        ) from None


def _reason(status: int, endpoint: str, settings: AirflowAPISettings) -> str:
    if endpoint.endswith("/auth/token") and status in (400, 401, 403):
        return f"the Airflow API refused the login of user {settings.username!r}; check the connection's login and password"
    if status == 401:
        return "the Airflow API refused the token"
    if status == 403:
        return (
            f"Airflow user {settings.username!r} may not do this: it needs permission to edit this DAG's "
            "Human-in-the-loop details, and to be one of the task's assigned_users when it names any"
        )
    if status == 404:
        return "not found; is the connection's host the API server's base URL (without /api/v2)?"
    if status == 409:
        return "the request was already answered"
    if 300 <= status < 400:
        return "unexpected redirect; is the connection's host the API server's base URL?"
    return "the Airflow API refused the request" if status < 500 else "the Airflow API server failed"


def _token_of(answer: Any, settings: AirflowAPISettings) -> str:
    """The token of ``POST /auth/token``'s answer, checked before it is sent anywhere or masked.

    Only a JWT's characters: anything else (a header injection, a token that masking could not
    find again) is refused with an error that does not quote it.
    """
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise AirflowAPIError(
            "POST /auth/token answered without an access_token", endpoint="POST /auth/token"
        )
    if _JWT_CHARS.fullmatch(token) is None:
        raise AirflowAPIError(
            "POST /auth/token answered with an access_token that is not a JWT (characters other than "
            "A-Z a-z 0-9 . _ ~ + / = -); it is not used",
            endpoint="POST /auth/token",
        )
    return token


def _object(answer: Any, endpoint: str, settings: AirflowAPISettings, token: str | None) -> dict[str, Any]:
    if not isinstance(answer, dict):
        excerpt = redact(json.dumps(answer, default=str)[:300], settings.password, token)
        raise AirflowAPIError("expected a JSON object", endpoint=endpoint, body=excerpt)
    return answer
