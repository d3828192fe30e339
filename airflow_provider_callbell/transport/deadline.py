"""One deadline per sync attempt: a watchdog thread that ends an attempt still running at its deadline.

``requests`` and urllib3 apply the read timeout to each socket read, so a server that trickles one
byte every few seconds never trips it. :class:`Watchdog` shuts the attempt's socket down when its
deadline passes. The connection pools of :mod:`~airflow_provider_callbell.transport._urllib3` arm it
at the start of every attempt; the sync send (:mod:`~airflow_provider_callbell.transport.sync`) opens
the window with :meth:`Watchdog.watch` and asks :attr:`Deadlines.expired` afterwards.

Standard library only: a connection is anything with a ``sock`` attribute.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from urllib3.connection import HTTPConnection


class _Attempt:
    """One try of one request: when it must end, and the connection it runs on."""

    __slots__ = ("conn", "deadline", "done", "expired")

    def __init__(self, conn: HTTPConnection, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.done = False
        self.expired = False


class Deadlines:
    """The budget of the requests running on this thread, and whether their last attempt ran out.

    Made by :meth:`Watchdog.watch` around one sync send; the connection pool
    arms a fresh deadline at the start of every attempt (a urllib3 retry is a new attempt).
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.attempt: _Attempt | None = None

    @property
    def expired(self) -> bool:
        """Whether the watchdog shut the last attempt's connection down at its deadline."""
        return self.attempt is not None and self.attempt.expired


class Watchdog:
    """One daemon thread that shuts down the socket of any sync attempt still running at its deadline.

    Why a watchdog rather than tighter socket timeouts: urllib3 and ``http.client`` read the status
    line and headers inside ``requests`` with a timeout per ``recv``, so no code of ours runs
    between two trickled bytes; only another thread can end that read, and ``shutdown()`` on the
    socket is the one call that wakes a blocked ``recv`` (plain or TLS) at once, on every platform.
    A thread per attempt would cost ~100 µs per message; one thread serving a heap of deadlines costs
    a push per attempt. The shutdown surfaces in the caller as a broken connection (or, for an answer
    without ``Content-Length``, as an early end), which the sync send reports as no answer in time, after
    asking :attr:`Deadlines.expired`.

    A connection still connecting (no socket yet) is checked again every 50 ms; the connect timeout
    bounds that phase by itself. The process-wide instance is :data:`WATCHDOG`; it starts its thread
    on first use and again in a forked child.
    """

    _RECHECK = 0.05
    #: The heap is pruned of finished attempts once it holds this many, and then twice as many as
    #: were left.
    _PRUNE_MIN = 64

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._local = threading.local()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._prune_at = self._PRUNE_MIN
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, budget: float) -> Iterator[Deadlines]:
        """``with WATCHDOG.watch(seconds) as deadlines:``: every attempt inside gets ``seconds``."""
        deadlines = Deadlines(budget)
        self._local.deadlines = deadlines
        try:
            yield deadlines
        finally:
            self._local.deadlines = None
            if deadlines.attempt is not None:
                deadlines.attempt.done = True

    def arm(self, conn: HTTPConnection) -> None:
        """Start an attempt on ``conn`` (the pool calls it); no-op outside :meth:`watch`."""
        deadlines: Deadlines | None = getattr(self._local, "deadlines", None)
        if deadlines is None:
            return
        if deadlines.attempt is not None:
            deadlines.attempt.done = True  # a retry: the previous attempt is over
        attempt = _Attempt(conn, self._clock() + deadlines.budget)
        deadlines.attempt = attempt
        conn._callbell_attempt = attempt  # type: ignore[attr-defined]  # whose attempt it runs now
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callbell-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if len(self._heap) >= self._prune_at:
                self._prune()
            if self._heap[0][2] is attempt:
                self._cond.notify()

    def _prune(self) -> None:
        """Drop the attempts that ended in time; the caller holds the lock.

        An attempt otherwise stays in the heap until its deadline passes: a bulk send at 285 messages
        per second with the default 35 s budget would keep about 10,000 finished attempts (2 MB).
        Pruning when the heap has doubled since the last prune costs O(1) per attempt, amortised.
        """
        self._heap = [entry for entry in self._heap if not entry[2].done]
        heapq.heapify(self._heap)
        self._prune_at = max(self._PRUNE_MIN, 2 * len(self._heap))

    def _run(self) -> None:
        with self._cond:
            while True:
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    _, _, attempt = heapq.heappop(self._heap)
                    if attempt.done or getattr(attempt.conn, "_callbell_attempt", None) is not attempt:
                        continue  # ended in time, or its connection went back to the pool and on
                    attempt.expired = True
                    sock = attempt.conn.sock
                    if sock is None:  # not connected yet (or already closed): look again shortly
                        heapq.heappush(self._heap, (now + self._RECHECK, next(self._order), attempt))
                        continue
                    # socket.socket's own shutdown: on a TLS socket, SSLSocket.shutdown would drop the
                    # SSL object under the reading thread's feet. OSError: it is closed already.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


#: The process's one watchdog.
WATCHDOG = Watchdog()
