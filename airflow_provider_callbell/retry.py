"""When a request to Callbell is tried again, and when it is not: one policy, decided per cause.

The policy runs inside urllib3 (``Retry`` on the hook's session adapter), so every call of the hook
gets it without a retry loop of its own. What it retries:

- ``429`` (rate limit): after ``Retry-After`` (whole seconds or an HTTP date, see
  :func:`parse_retry_after`) when Callbell sends a readable one, else after exponential backoff with
  jitter;
- ``502``/``503``/``504`` and connection failures before the request was sent: nothing was done;
- ``500``, read timeouts and connections dropped after the request was sent: only for idempotent
  methods (``GET``, ``DELETE``), or for every method with ``delivery="at_least_once"``. A send may
  have gone out in those cases, so by default (``"at_most_once"``) it is not sent again;
- nothing else: other 4xx answers can never succeed by repetition.

Retries are bounded by attempts and by the total time spent waiting; a ``Retry-After`` longer than
the time left ends the retries at once instead of sleeping past the budget. Each retry is logged
with its reason. ``sleep`` is injectable so that tests never wait.

With a :class:`~airflow_provider_callbell.ratelimit.RateGate` (the hook always passes its own), a
``429``'s wait pauses the gate, so every thread sending through the hook waits it out, not only the
one that was refused; and each retry takes its turn at the gate like a first attempt.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from airflow_provider_callbell.exceptions import CallbellConnectionConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

    from airflow_provider_callbell.ratelimit import RateGate

Delivery = Literal["at_most_once", "at_least_once"]
DELIVERIES: tuple[str, ...] = get_args(Delivery)
#: Answers that mean "nothing was done, try again later".
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Methods that may be repeated whatever happened to the first attempt.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
#: The longest ``Retry-After`` taken as given; a longer one is cut to it. The retry budget
#: (``max_seconds``) usually ends the retries first, and the error keeps the (cut) wait.
RETRY_AFTER_MAX = 3600.0
#: More digits than this is no delay a server means (9 digits is 31 years).
_RETRY_AFTER_DIGITS = 9


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or ``None`` when it is absent or unreadable.

    RFC 9110 allows a whole number of seconds or an HTTP date. Anything else (``1.5``, ``-5``,
    ``abc``, 5,000 digits) is ignored, so the caller falls back to its backoff instead of failing;
    a date in the past means 0; any wait is cut to :data:`RETRY_AFTER_MAX`.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_MAX) if len(value) <= _RETRY_AFTER_DIGITS else None
    if len(value) > 64:  # no HTTP date is this long
        return None
    try:
        date = email.utils.parsedate_to_datetime(value)
        seconds = date.timestamp() - now()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


@dataclass(frozen=True)
class RetryPolicy:
    """How the hook retries; built from the connection's extras unless the hook is given one.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param max_seconds: the most time spent waiting between attempts of one request.
    :param backoff: the first wait in seconds when no ``Retry-After`` is given; it doubles on each
        retry, with up to 50% jitter either way, and never exceeds ``backoff_max``.
    :param backoff_max: the longest single wait.
    :param delivery: ``"at_most_once"`` (default) never repeats a send whose fate is unknown (``500``,
        read timeout, dropped connection); ``"at_least_once"`` repeats it, accepting a duplicate message.
    :param sleep: how to wait; tests pass a recorder.
    :param clock: the monotonic clock the time budget is measured with; tests pass a fake one that
        their ``sleep`` advances.
    """

    max_retries: int = 3
    max_seconds: float = 60.0
    backoff: float = 0.5
    backoff_max: float = 30.0
    delivery: Delivery = "at_most_once"
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise CallbellConnectionConfigError(
                f"max_retries must be a whole number >= 0, got {self.max_retries!r}"
            )
        for name in ("max_seconds", "backoff", "backoff_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise CallbellConnectionConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.delivery not in DELIVERIES:
            raise CallbellConnectionConfigError(
                f"delivery must be one of {', '.join(map(repr, DELIVERIES))}, got {self.delivery!r}"
            )

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> RetryPolicy:
        """Read ``max_retries``, ``retry_max_seconds``, ``retry_backoff`` and ``delivery`` extras."""
        kwargs: dict[str, Any] = {}
        for extra, (name, kind) in _EXTRAS.items():
            value = extras.get(extra)
            if value is None or value == "":
                continue
            try:
                kwargs[name] = value if kind is str else kind(value)
            except (TypeError, ValueError):
                raise CallbellConnectionConfigError(
                    f"extra {extra!r} must be a {kind.__name__}, got {value!r}"
                ) from None
        return cls(**kwargs)

    def to_urllib3(self, log: Callable[[str], None], gate: RateGate | None = None) -> CallbellRetry:
        """The urllib3 ``Retry`` that carries this policy out; ``log`` receives one line per retry.

        ``gate``, when given, is paused by a ``429``'s wait and passed before every retry.
        """
        return CallbellRetry(
            total=self.max_retries,
            connect=self.max_retries,
            read=self.max_retries,
            status=self.max_retries,
            other=0,
            redirect=0,
            allowed_methods=None,  # decided per cause in is_retry / increment
            status_forcelist=RETRY_STATUSES | {500},
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer is mapped to a typed error by the hook
            policy=self,
            log=log,
            gate=gate,
        )


_EXTRAS: dict[str, tuple[str, type]] = {
    "max_retries": ("max_retries", int),
    "retry_max_seconds": ("max_seconds", float),
    "retry_backoff": ("backoff", float),
    "delivery": ("delivery", str),
}


class CallbellRetry(Retry):
    """urllib3's ``Retry`` with the decisions of :class:`RetryPolicy` and a time budget."""

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
        reason = f"HTTP {response.status}" if response is not None else type(error).__name__
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
