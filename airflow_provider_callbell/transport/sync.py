"""The sync transport, over ``requests``: the session a hook keeps, and the one sync send.

:func:`send` is the only code that talks HTTP from a worker (an operator, a sensor, a bulk send's
threads). Every attempt ends within the connect timeout plus the read timeout, however slowly a
server trickles its answer (:mod:`~airflow_provider_callbell.transport.deadline`); the answer is read
as a stream and refused past the size cap; the retry policy runs inside urllib3
(:func:`~airflow_provider_callbell.transport._urllib3.urllib3_retry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from airflow_provider_callbell.bulk import MAX_WORKERS
from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellInvalidResponseError
from airflow_provider_callbell.transport import protocol
from airflow_provider_callbell.transport._urllib3 import DeadlineAdapter, urllib3_retry
from airflow_provider_callbell.transport.caps import BodyTooLargeError, join_capped
from airflow_provider_callbell.transport.deadline import WATCHDOG
from airflow_provider_callbell.transport.tls import ca_bundle

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_callbell.connection import CallbellSettings
    from airflow_provider_callbell.ratelimit import RateGate
    from airflow_provider_callbell.transport.protocol import TransportLog


def new_session(settings: CallbellSettings, *, log: TransportLog, gate: RateGate) -> requests.Session:
    """A ``requests.Session`` for ``settings``: pooled connections, auth, retries and deadlines.

    Its pool keeps up to :data:`~airflow_provider_callbell.bulk.MAX_WORKERS` connections, so that
    every worker of a bulk send reuses one instead of opening a new one per message. Its adapter
    gives every attempt a deadline (:class:`~airflow_provider_callbell.transport._urllib3.DeadlineAdapter`)
    and carries the retry policy out, logging each retry to ``log`` and pausing ``gate`` after a ``429``.

    The environment's proxy settings (``HTTPS_PROXY``, ``NO_PROXY``, ...) and CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) are read once, here, for the base URL, which is
    fixed per session; ``requests`` would otherwise read them on every call. A ``.netrc`` is never
    read: it could replace the token's header.
    """
    session = requests.Session()
    session.headers.update(protocol.headers(settings.token))
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(settings.base_url)
    session.verify = ca_bundle() or True
    adapter = DeadlineAdapter(
        pool_maxsize=MAX_WORKERS, max_retries=urllib3_retry(settings.retry, log=log.warning, gate=gate)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def send(
    session: requests.Session,
    settings: CallbellSettings,
    method: str,
    path: str,
    *,
    json: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    log: TransportLog,
) -> Any:
    """Call Callbell and return the decoded JSON body (``None`` for an empty answer).

    Every error becomes a :class:`~airflow_provider_callbell.exceptions.CallbellAPIError` subclass
    carrying the status code, the endpoint and a short, redacted body excerpt, never the token or the
    request headers. Each attempt ends within the connect timeout plus the read timeout.
    """
    endpoint = f"{method} {path}"
    error: CallbellAPIError | None = None
    with WATCHDOG.watch(settings.budget) as deadlines:
        try:
            response = session.request(
                method,
                settings.base_url + path,
                json=json,
                params=params,
                timeout=settings.timeout,
                allow_redirects=False,  # a redirect must not carry the token elsewhere
                stream=True,  # so that an oversized answer is refused, not read into memory
            )
            try:
                # urllib3 inflates a compressed answer a bounded slice per read: a gzip bomb stops at the cap.
                body = join_capped(response.iter_content(chunk_size=64 * 1024), response.status_code)
            finally:
                response.close()
        except requests.exceptions.ContentDecodingError:
            error = CallbellInvalidResponseError(
                "corrupt compressed answer", status_code=response.status_code, endpoint=endpoint
            )
        except requests.RequestException as err:
            error = protocol.no_answer_error(
                settings.token,
                endpoint,
                err,
                maybe_acted_on=_may_have_reached_callbell(err),
                timed_out=_timed_out(err),
                unreachable=protocol.address(settings) if _refused(err) else None,
            )
        except BodyTooLargeError as err:
            error = protocol.too_large_error(settings.token, endpoint, err)
    # Raised here, outside the except blocks, so that no exception keeps the request (and its
    # headers) in its __context__.
    if deadlines.expired:
        raise protocol.out_of_time_error(settings, endpoint)
    if error is not None:
        raise error
    return protocol.decode(settings, endpoint, response, body, log)


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
    return not isinstance(err, requests.ConnectionError) or not isinstance(_reason(err), NewConnectionError)


def _refused(err: requests.RequestException) -> bool:
    """Whether no connection could be made at all: refused, a name that does not resolve, no route."""
    return isinstance(err, requests.ConnectionError) and isinstance(_reason(err), NewConnectionError)


def _timed_out(err: requests.RequestException) -> bool:
    """Whether no answer came because a connect or read timeout ran out, on the last try or an earlier one."""
    return isinstance(err, requests.Timeout) or isinstance(_reason(err), Urllib3TimeoutError)


def _reason(err: requests.RequestException) -> object:
    """urllib3's own error behind a ``requests`` one (a ``MaxRetryError``'s ``reason``), if any."""
    return getattr(err.args[0], "reason", None) if err.args else None
