"""What the hook's one transport needs to survive a hostile server: a deadline, caps and redaction.

``CallbellHook._request`` (``requests``) and ``CallbellHook._arequest`` (``httpx``) are the only code
that talks HTTP. This module holds what they share or need beyond what those libraries give:

- :func:`redact`: the one function that removes the token and any ``Authorization`` value from text
  that came from a server, before the text reaches an exception, a log line, an XCom or an event;
- :data:`WATCHDOG` and :class:`DeadlineAdapter`: one deadline per sync attempt. ``requests`` and
  urllib3 apply the read timeout to each socket read, so a server that trickles one byte every few
  seconds never trips it; the watchdog shuts the attempt's socket down when its deadline passes;
- :class:`BoundedDecoder`: undoes ``Content-Encoding`` (gzip, deflate) a bounded slice at a time, so
  that the async path's size cap holds for the decoded answer (a gzip bomb) too.

Nothing here is public API.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import re
import socket
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from collections.abc import Iterator

    from urllib3.connection import HTTPConnection
    from urllib3.poolmanager import PoolManager

#: The largest answer read, after decoding; Callbell's are a few hundred bytes, anything bigger is not
#: Callbell's API.
MAX_BODY_BYTES = 1 << 20
#: What both transports ask for; :class:`BoundedDecoder` undoes exactly these.
ACCEPT_ENCODING = "gzip, deflate"
#: A credential is never this short; shorter "tokens" (test fixtures) are not searched for in text.
_MIN_SECRET_CHARS = 4
_SECRET_PATTERNS = (
    # "Authorization: <value>" as a header line, a JSON member or a Python repr echoes it.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
    # A credential after its scheme, wherever it stands (a URL, a log line the server quotes, ...).
    re.compile(r"(?i)\b((?:bearer|basic|digest)\s+)[A-Za-z0-9._~+/=-]{8,}"),
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with each secret and every ``Authorization`` value replaced by ``***``.

    Text that came from a server is untrusted: a proxy, a debugging endpoint or a misconfigured base
    URL may echo the request's headers back. Every excerpt the transport keeps goes through here.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


# -- One deadline per sync attempt ----------------------------------------------------------------


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

    Made by :meth:`Watchdog.watch` around one call of the hook's transport; the connection pool
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
    without ``Content-Length``, as an early end), which the hook reports as no answer in time, after
    asking :attr:`Deadlines.expired`.

    A connection still connecting (no socket yet) is checked again every 50 ms; the connect timeout
    bounds that phase by itself. The process-wide instance is :data:`WATCHDOG`; it starts its thread
    on first use and again in a forked child.
    """

    _RECHECK = 0.05

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._local = threading.local()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, budget: float) -> _Watch:
        """``with WATCHDOG.watch(seconds) as deadlines:``: every attempt inside gets ``seconds``."""
        return _Watch(self, budget)

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
            if self._heap[0][2] is attempt:
                self._cond.notify()

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


class _Watch:
    def __init__(self, watchdog: Watchdog, budget: float) -> None:
        self._watchdog = watchdog
        self.deadlines = Deadlines(budget)

    def __enter__(self) -> Deadlines:
        self._watchdog._local.deadlines = self.deadlines
        return self.deadlines

    def __exit__(self, *exc_info: object) -> None:
        self._watchdog._local.deadlines = None
        if self.deadlines.attempt is not None:
            self.deadlines.attempt.done = True


#: The process's one watchdog.
WATCHDOG = Watchdog()


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
    """``HTTPAdapter`` whose connection pools arm :data:`WATCHDOG` at the start of every attempt.

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


# -- Bounded decoding -----------------------------------------------------------------------------


class BodyTooLargeError(Exception):
    """The decoded answer passed :data:`MAX_BODY_BYTES`; ``head`` holds its first bytes."""

    def __init__(self, head: bytes) -> None:
        super().__init__(f"larger than {MAX_BODY_BYTES} bytes")
        self.head = head
        self.status_code: int | None = None  # the answer's, set by the transport that read it


class UnsupportedEncodingError(Exception):
    """The answer's ``Content-Encoding`` is not one of :data:`ACCEPT_ENCODING`, or is corrupt."""


class BoundedDecoder:
    """Undo a ``Content-Encoding`` and collect at most :data:`MAX_BODY_BYTES` of the result.

    ``zlib``'s ``max_length`` stops each step one byte past the cap, so a 1 kB chunk that would
    inflate to 1 GB never does: memory stays within the cap plus one network chunk.
    """

    def __init__(self, content_encoding: str | None) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("identity", ""):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise UnsupportedEncodingError(
                f"Content-Encoding {encoding[:40]!r} (asked for {ACCEPT_ENCODING})"
            )
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Decode one chunk of the answer as received; raise once the decoded size passes the cap."""
        if self._zlib is None:
            self._add(data)
            return
        try:
            while data:
                self._add(self._zlib.decompress(data, MAX_BODY_BYTES - self._size + 1))
                data = self._zlib.unconsumed_tail
        except zlib.error as err:
            raise UnsupportedEncodingError(f"corrupt compressed answer ({err})") from None

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        self._chunks.append(data)
        if self._size > MAX_BODY_BYTES:
            raise BodyTooLargeError(b"".join(self._chunks)[:1000])

    def body(self) -> bytes:
        """The whole decoded answer, once every chunk was fed."""
        if self._zlib is not None:
            self._add(self._zlib.flush())
        return b"".join(self._chunks)


def iter_capped(chunks: Iterator[bytes]) -> bytes:
    """Join already decoded chunks, raising :class:`BodyTooLargeError` past :data:`MAX_BODY_BYTES`."""
    decoder = BoundedDecoder(None)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.body()
