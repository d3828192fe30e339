"""Every place the provider subclasses urllib3 or ``requests``, and every private name it relies on.

The sync transport gets a deadline per attempt and the retry policy by plugging classes into urllib3
rather than wrapping its calls. Those hooks are collected here, so that an upgrade of urllib3 or
``requests`` is checked in one file (``tests/test_private_apis.py`` checks each name on every run).
What they rely on:

- ``HTTPConnectionPool._make_request`` (private): overridden by the two pool classes to arm
  :data:`~airflow_provider_callbell.transport.deadline.WATCHDOG` at the start of every attempt, the
  first and each retry, connecting included.
- ``PoolManager.pool_classes_by_scheme`` (undocumented attribute): replaced on the adapter's pool
  manager and its proxy managers so that they make those pools.
- ``HTTPConnection.sock``, and an attribute of ours on urllib3's connections: the watchdog
  (:mod:`~airflow_provider_callbell.transport.deadline`) marks the attempt a connection runs and
  shuts down its socket at the deadline.
- ``Retry._is_read_error`` (private): tells a read error (the request was sent, its fate is unknown)
  from a connection error, so that :class:`CallbellRetry` never resends a message that may have
  gone out.
- ``Retry.increment``'s private parameters ``_pool`` and ``_stacktrace``, handed on by position.
- The arguments of urllib3's ``Retrying (...)`` warning (logger ``urllib3.connectionpool``): the
  ``Retry`` object comes first, which is how :class:`_OwnRetryWarnings` drops the copy of a retry of
  ours and keeps other clients' (``tests/test_connectivity.py::TestOneLinePerRetry`` fails if that
  changes).
- ``HTTPAdapter.init_poolmanager`` and ``HTTPAdapter.proxy_manager_for``, and ``Retry``'s ``new``,
  ``is_retry``, ``increment``, ``sleep``, ``get_backoff_time`` and ``get_retry_after``: documented
  override points.

Beyond this file, the sync send (:mod:`~airflow_provider_callbell.transport.sync`) reads urllib3's
error behind a ``requests`` one (``ConnectionError.args[0].reason``) to tell a refused connection.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from airflow_provider_callbell.retry import IDEMPOTENT_METHODS, RETRY_STATUSES, parse_retry_after
from airflow_provider_callbell.transport.deadline import WATCHDOG

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from urllib3.connectionpool import ConnectionPool
    from urllib3.poolmanager import PoolManager
    from urllib3.response import BaseHTTPResponse

    from airflow_provider_callbell.ratelimit import RateGate
    from airflow_provider_callbell.retry import RetryPolicy


# -- One deadline per attempt ---------------------------------------------------------------------


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        WATCHDOG.arm(conn)  # each attempt, first or retry, connect included, starts its clock here
        return super()._make_request(conn, *args, **kwargs)


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        WATCHDOG.arm(conn)
        return super()._make_request(conn, *args, **kwargs)


_POOL_CLASSES = {"http": _DeadlineHTTPConnectionPool, "https": _DeadlineHTTPSConnectionPool}


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connection pools arm :data:`~.deadline.WATCHDOG` at the start of every attempt.

    Proxies (``http``/``https``) get the same pools; a ``socks`` proxy keeps urllib3's own, so it
    has no deadline beyond the timeouts.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# -- The retry policy, carried out ----------------------------------------------------------------


def urllib3_retry(
    policy: RetryPolicy, log: Callable[[str], None], gate: RateGate | None = None
) -> CallbellRetry:
    """The urllib3 ``Retry`` that carries ``policy`` out; ``log`` receives one line per retry.

    ``gate``, when given, is paused by a ``429``'s wait and passed before every retry. urllib3's own
    ``Retrying (...)`` warning for these retries is dropped (:class:`_OwnRetryWarnings`): the line
    logged here says the same (the cause, with the error's text), so each retry is logged once.
    """
    _silence_own_retry_warnings()
    return CallbellRetry(
        total=policy.max_retries,
        connect=policy.max_retries,
        read=policy.max_retries,
        status=policy.max_retries,
        other=0,
        redirect=0,
        allowed_methods=None,  # decided per cause in is_retry / increment
        status_forcelist=RETRY_STATUSES | {500},
        backoff_factor=policy.backoff,
        backoff_max=policy.backoff_max,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer is mapped to a typed error by the transport
        policy=policy,
        log=log,
        gate=gate,
    )


class _OwnRetryWarnings(logging.Filter):
    """Drops urllib3's ``Retrying (...) after connection broken by ...`` warning for a :class:`CallbellRetry`.

    urllib3 logs it (``urllib3.connectionpool``) with the ``Retry`` object as its first argument, so
    the record of a retry of ours is told from any other client's in the process, whose warnings stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and args and isinstance(args[0], CallbellRetry))


_OWN_RETRY_WARNINGS = _OwnRetryWarnings()


def _silence_own_retry_warnings() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _OWN_RETRY_WARNINGS not in logger.filters:
        logger.addFilter(_OWN_RETRY_WARNINGS)


class CallbellRetry(Retry):
    """urllib3's ``Retry`` with the decisions of :class:`~airflow_provider_callbell.retry.RetryPolicy` and a time budget."""

    def __init__(
        self,
        *args: Any,
        policy: RetryPolicy,
        log: Callable[[str], None],
        gate: RateGate | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.log = log
        self.gate = gate
        self.deadline = deadline  # monotonic time after which no retry starts; set on the first retry
        self.next_wait: float | None = None  # decided (and logged) once in increment, used by sleep

    def new(self, **kw: Any) -> CallbellRetry:
        kw.setdefault("policy", self.policy)
        kw.setdefault("log", self.log)
        kw.setdefault("gate", self.gate)
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def _unsure_if_sent(self, method: str | None) -> bool:
        """A retry could repeat a request that was acted on: allowed only where that is harmless."""
        return self.policy.delivery == "at_most_once" and (method or "").upper() not in IDEMPOTENT_METHODS

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 500 and self._unsure_if_sent(method):
            return False
        return super().is_retry(method, status_code, has_retry_after)

    def get_backoff_time(self) -> float:
        """Exponential from the first retry (urllib3 waits 0 s before it), with jitter either way."""
        errors = len(self.history)
        if errors == 0:
            return 0.0
        wait: float = min(self.policy.backoff_max, self.policy.backoff * 2.0 ** (errors - 1))
        return wait * random.uniform(0.5, 1.5)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        """urllib3's parser raises on ``1.5`` or 5,000 digits, losing the answer: ours ignores them."""
        return parse_retry_after(response.headers.get("Retry-After"))

    def _wait_for(self, response: BaseHTTPResponse | None) -> float:
        if response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after is not None:
                return retry_after
        return self.get_backoff_time()

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        wait = self.next_wait if self.next_wait is not None else self._wait_for(response)
        if self.gate is None:
            self.policy.sleep(wait)
            return
        if response is not None and response.status == 429:
            self.gate.pause(wait)  # the account is over its limit: every request waits, not only this one
        else:
            self.policy.sleep(wait)
        self.gate.acquire()  # the retry is a request like any other: it waits its turn

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> CallbellRetry:
        if error is not None and self._is_read_error(error) and self._unsure_if_sent(method):
            raise error  # the request was sent and its fate is unknown: never resend it
        new_retry = super().increment(method, url, response, error, _pool, _stacktrace)
        now = self.policy.clock()
        if new_retry.deadline is None:
            new_retry.deadline = now + self.policy.max_seconds
        wait = new_retry._wait_for(response)
        reason = f"HTTP {response.status}" if response is not None else _cause(error)
        path = (url or "").split("?", 1)[0]
        if now + wait > new_retry.deadline:
            self.log(
                f"Callbell {method} {path}: {reason}; not retrying, the {self.policy.max_seconds:g} s retry budget would be exceeded"
            )
            raise MaxRetryError(_pool, url or "", ResponseError(f"retry budget spent after {reason}"))  # type: ignore[arg-type]
        new_retry.next_wait = wait
        attempt = len(new_retry.history)
        self.log(
            f"Callbell {method} {path}: {reason}; retry {attempt} of {self.policy.max_retries} in {wait:.2f} s"
        )
        return new_retry


def _cause(error: Exception | None) -> str:
    """The error behind a retry as urllib3's own warning would show it: its type and its text.

    The text of a connection or read error names the host and the system's reason ("[Errno 111]
    Connection refused"); it holds no request header.
    """
    if error is None:
        return "no answer"
    cause = getattr(error, "reason", None) or error  # a MaxRetryError's or ProtocolError's cause
    return f"{type(cause).__name__}: {cause}"
