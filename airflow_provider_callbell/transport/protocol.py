"""What the sync and async sends share: the request's headers, and an answer turned into JSON or a typed error.

As httpx builds requests and reads answers once, in its client, and keeps I/O in its transports, the
two sends here (:mod:`~airflow_provider_callbell.transport.sync` over ``requests``,
:mod:`~airflow_provider_callbell.transport.aio` over ``httpx``) only move bytes; what the bytes mean
is decided here, once: :func:`decode` maps a status to its exception class and parses the JSON, and
the ``*_error`` builders give every failure without an answer its type and its words. Every piece of
server text an error keeps goes through :func:`~airflow_provider_callbell.transport.caps.redact`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_callbell.exceptions import (
    BODY_EXCERPT_CHARS,
    CallbellConnectError,
    CallbellInvalidResponseError,
    CallbellNoAnswerError,
    CallbellRateLimitError,
    CallbellTimeoutError,
    api_error_class,
)
from airflow_provider_callbell.get_provider_info import DEFAULT_BASE_URL
from airflow_provider_callbell.retry import parse_retry_after
from airflow_provider_callbell.transport.caps import (
    ACCEPT_ENCODING,
    MAX_BODY_BYTES,
    exception_text,
    printable,
    redact,
)

if TYPE_CHECKING:
    from datetime import timedelta

    import httpx
    from requests.structures import CaseInsensitiveDict

    from airflow_provider_callbell.connection import CallbellSettings
    from airflow_provider_callbell.transport.caps import BodyTooLargeError


class TransportLog(Protocol):
    """The logger methods the transport uses (Airflow's and the standard library's loggers fit)."""

    def debug(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


class Response(Protocol):
    """What the sync (``requests``) and async (``httpx``) answers share, as far as :func:`decode` reads."""

    @property
    def status_code(self) -> int: ...
    @property
    def encoding(self) -> str | None: ...
    @property
    def headers(self) -> CaseInsensitiveDict[str] | httpx.Headers: ...
    @property
    def elapsed(self) -> timedelta: ...


def headers(token: str) -> dict[str, str]:
    """The headers of every request: the token, JSON both ways, and the encodings the caps undo."""
    return {**auth_header(token), **common_headers()}


def auth_header(token: str) -> dict[str, str]:
    """The token's header: the one header that differs between connections."""
    return {"Authorization": f"Bearer {token}"}


def common_headers() -> dict[str, str]:
    """:func:`headers` but the token's: those of a client that requests with different tokens share."""
    return {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
    }


def decode(
    settings: CallbellSettings, endpoint: str, response: Response, body: bytes, log: TransportLog
) -> Any:
    """Return the JSON body of an answer (``None`` for an empty one), or raise the typed error for it."""
    status = response.status_code
    log.debug("%s answered %s in %.0f ms", endpoint, status, response.elapsed.total_seconds() * 1000)
    text = redact(_text(body, response.encoding), settings.token)
    if not 200 <= status < 300:
        error = api_error_class(status)(
            _reason(status, settings), status_code=status, endpoint=endpoint, body=text
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


# -- The errors of an answer that cannot be used, or of no answer at all --------------------------


def invalid_error(token: str, reason: str, endpoint: str, data: Any) -> CallbellInvalidResponseError:
    """The error for a decoded answer of the wrong shape, with a redacted excerpt of it."""
    return CallbellInvalidResponseError(reason, endpoint=endpoint, body=redact(_excerpt(data), token))


def too_large_error(token: str, endpoint: str, err: BodyTooLargeError) -> CallbellInvalidResponseError:
    """The error for an answer past :data:`~airflow_provider_callbell.transport.caps.MAX_BODY_BYTES`."""
    return CallbellInvalidResponseError(
        f"the answer is larger than {MAX_BODY_BYTES} bytes, which no Callbell endpoint sends",
        status_code=err.status_code,
        endpoint=endpoint,
        body=redact(err.head.decode("utf-8", errors="replace"), token),
    )


def no_answer_error(
    token: str,
    endpoint: str,
    err: Exception,
    *,
    maybe_acted_on: bool = True,
    timed_out: bool = False,
    unreachable: str | None = None,
) -> CallbellNoAnswerError:
    """The error for a request that got no HTTP answer; transient.

    ``maybe_acted_on`` is ``False`` only when the request is known not to have reached Callbell;
    ``timed_out`` makes it a :class:`~airflow_provider_callbell.exceptions.CallbellTimeoutError`
    (a connect or read timeout of the HTTP library); ``unreachable``, the ``host:port`` to which no
    connection could be made (refused, unresolved), a
    :class:`~airflow_provider_callbell.exceptions.CallbellConnectError`.
    """
    # The library's words may quote the server (``http.client`` puts a bad status line in its error):
    # the detail is logged at each poll of a sensor, so it is escaped as well as redacted.
    detail = printable(exception_text(err), token, limit=BODY_EXCERPT_CHARS)
    if unreachable is not None:
        return CallbellConnectError(
            f"no answer from Callbell: no connection to {unreachable} ({detail})",
            host=unreachable,
            endpoint=endpoint,
        )
    kind = CallbellTimeoutError if timed_out else CallbellNoAnswerError
    return kind(f"no answer from Callbell ({detail})", endpoint=endpoint, maybe_acted_on=maybe_acted_on)


def address(settings: CallbellSettings) -> str:
    """``host:port`` of the base URL, as errors about reaching it name it."""
    parts = urlsplit(settings.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def out_of_time_error(settings: CallbellSettings, endpoint: str) -> CallbellTimeoutError:
    """The error for an attempt stopped at its deadline; transient, like no answer at all."""
    connect, read = settings.timeout
    return CallbellTimeoutError(
        f"no complete answer from Callbell within {connect + read:g} s (connect timeout {connect:g} s "
        f"+ read timeout {read:g} s)",
        endpoint=endpoint,
    )


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


def _reason(status: int, settings: CallbellSettings) -> str:
    if status == 404 and not settings.at_api_root:
        return (
            f"Callbell refused the request: not found; the base URL {settings.base_url!r} does not end "
            f"with /v1, where Callbell's API lives (e.g. {DEFAULT_BASE_URL!r})"
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
