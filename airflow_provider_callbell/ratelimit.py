"""When a request to Callbell may start: one gate per hook, shared by every thread that uses the hook.

Callbell limits an account to 300 requests per second and answers ``429`` beyond that. Two things
follow for a client that sends from several threads at once:

- requests must be spaced *before* they go out, across all threads, or they trip the limit and then
  wait; :meth:`RateGate.limited` sets that spacing for the duration of a bulk send;
- a ``429`` concerns the account, not the request that happened to receive it: while one thread waits
  out ``Retry-After``, the others must wait too, or they are refused in turn and keep the account
  over its limit. :meth:`RateGate.pause` holds every thread.

The hook calls :meth:`RateGate.acquire` before each request, and its retry policy (``retry.py``)
calls :meth:`~RateGate.pause` for a ``429`` and :meth:`~RateGate.acquire` before each retry, so
retries are spaced and counted like first attempts. ``clock`` and ``sleep`` are the retry policy's,
so tests drive both with one fake clock and never wait.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow_provider_callbell.exceptions import CallbellError
from airflow_provider_callbell.validation import check_max_rps

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class RateGate:
    """Space request starts at most ``max_rps`` per second across threads, and hold them all in a pause.

    Each caller reserves the next free start time under a lock, then sleeps outside it, so threads
    queue in order without holding the lock while they wait. Spacing (rather than a burst allowance)
    keeps every one-second window under the limit wherever it falls, which is how Callbell counts.

    :param clock: a monotonic clock in seconds.
    :param sleep: how to wait; tests pass one that advances their fake ``clock``.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 0.0  # seconds between two starts; 0 means no spacing
        self._next_start = 0.0  # the earliest start the next spaced request may reserve
        self._paused_until = 0.0

    @property
    def max_rps(self) -> float | None:
        """The spacing in force, as requests per second; ``None`` outside :meth:`limited`."""
        return 1.0 / self._interval if self._interval else None

    @contextmanager
    def limited(self, max_rps: float) -> Iterator[None]:
        """Space every request started through this gate ``1 / max_rps`` seconds apart, until exit.

        One bulk send at a time: a second ``limited`` while one is active is refused rather than
        silently doubling the rate the account sees.
        """
        interval = 1.0 / check_max_rps(max_rps)  # finite and sensible, before any request
        with self._lock:
            if self._interval:
                raise CallbellError(
                    "a bulk send is already running on this hook; use one hook per concurrent bulk send"
                )
            self._interval = interval
        try:
            yield
        finally:
            with self._lock:
                self._interval = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request through this gate for ``seconds`` from now (a ``429``'s ``Retry-After``).

        Overlapping pauses do not add up: the gate opens when the latest one ends.
        """
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self) -> None:
        """Wait until a request may start: after any pause, and one interval after the previous start."""
        while True:
            with self._lock:
                now = self._clock()
                start = max(now, self._paused_until)
                if self._interval:
                    start = max(start, self._next_start)
                    self._next_start = start + self._interval
            if start > now:
                self._sleep(start - now)
            with self._lock:
                if self._paused_until <= start:
                    return
            # Another thread met a 429 while this one slept: its reserved start now falls inside the
            # pause, so it queues again behind the pause instead of going out into it.
