"""When a request to Callbell is tried again, and when it is not: one policy, decided per cause.

The policy runs inside urllib3 (a ``Retry`` on the hook's session adapter, built from the policy by
:func:`airflow_provider_callbell.transport._urllib3.urllib3_retry`), so every call of the hook gets it
without a retry loop of its own. This module decides, and imports no HTTP library. What it retries:

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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from airflow_provider_callbell.exceptions import CallbellConnectionConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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


_EXTRAS: dict[str, tuple[str, type]] = {
    "max_retries": ("max_retries", int),
    "retry_max_seconds": ("max_seconds", float),
    "retry_backoff": ("backoff", float),
    "delivery": ("delivery", str),
}
