"""When a request to Callbell may start: one gate per hook, and optionally one schedule per account.

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

The account is shared by more than one hook: bulk tasks on several Celery workers, sensors polling in
the triggerer, notifiers. With the connection extra ``rate_limit_storage`` (a storage URI of the
`limits <https://limits.readthedocs.io>`_ library, e.g. ``redis://redis:6379/1``), :func:`gate_for`
returns a :class:`SharedRateGate`: on top of the hook's own gate, every request takes its place in one
schedule of :data:`ACCOUNT_RPS` evenly spaced starts per second kept in that storage, and a ``429``'s
pause is kept there too, so every process waits it out. The account is named by :func:`account_id`, a hash of the
base URL and the token; the token itself never reaches the storage. Nothing of this is imported
unless the extra is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from airflow_provider_callbell.exceptions import CallbellConnectionConfigError, CallbellError
from airflow_provider_callbell.retry import RETRY_AFTER_MAX
from airflow_provider_callbell.transport.caps import redact, redact_url, url_secrets
from airflow_provider_callbell.validation import check_max_rps

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_callbell.connection import CallbellSettings

#: Callbell allows 300 requests per second per account; 95% of it leaves room for timing jitter. A
#: bulk send's default ``max_rps``, and the rate of the shared schedule.
DEFAULT_MAX_RPS = 285.0
#: The shared schedule's rate: requests per second of one account, across every process. 95% of
#: Callbell's 300 (as a bulk send's default ``max_rps``) leaves room for the time between taking a
#: place here and reaching Callbell, which counts arrivals.
ACCOUNT_RPS = int(DEFAULT_MAX_RPS)
#: After the storage failed, how long every gate of this process uses its in-process gate alone
#: before it asks the storage again.
STORAGE_RETRY_SECONDS = 30.0
#: Seconds a redis storage may take to connect, and to answer one command, before it counts as down.
STORAGE_TIMEOUT = 2.0
#: The shortest pause kept in the shared storage: a pause of 0 would take a place instead.
_MIN_WAIT = 0.001
#: How late a request may reach its start (its process was stalled: a busy machine, a long garbage
#: collection) and still go out: a later one takes a new start, once. Gone out late, it would arrive
#: bunched with the requests spaced after it, and Callbell counts arrivals: more than the 5% left below
#: the limit (53 ms of places at 285/s) bunched in one second is a ``429``, and a second's pause for
#: the whole account. A new start costs the account one unused place instead.
LATE_SECONDS = 0.02
#: The furthest ahead an account's schedule can legitimately be: the longest pause (a ``Retry-After``
#: is cut to ``retry.RETRY_AFTER_MAX``) and a minute of places taken ahead. A schedule further ahead,
#: or one that is not a number (the key written by something else), is read as no schedule at all,
#: rather than holding every process of the account until that time.
SCHEDULE_HORIZON = RETRY_AFTER_MAX + 60.0


class Log(Protocol):
    """The logger methods a gate and a bulk send use (Airflow's and the standard library's loggers fit)."""

    def debug(self, msg: str, /, *args: Any) -> Any: ...

    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


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
        late_once = False
        while True:
            with self._lock:
                now = self._clock()
                start = max(now, self._paused_until)
                spaced = bool(self._interval)
                if spaced:
                    start = max(start, self._next_start)
                    self._next_start = start + self._interval
            if start > now:
                self._sleep(start - now)
            with self._lock:
                if self._paused_until > start:
                    # Another thread met a 429 while this one slept: its reserved start now falls
                    # inside the pause, so it queues again behind the pause instead of going out into it.
                    continue
            if spaced and not late_once and self._clock() - start > LATE_SECONDS:
                late_once = True  # woken late (LATE_SECONDS): a new start rather than a bunch
                continue
            return

    async def aacquire(self) -> None:
        """For async code (triggers): the in-process gate does not hold polls, which keep their own pace."""

    async def apause(self, seconds: float) -> None:
        """For async code: a trigger's ``429`` is its own to wait out (the trigger polls again later)."""


# -- One window per account, shared by every process ------------------------------------------------


def account_id(base_url: str, token: str) -> str:
    """The name of an account in the shared storage: a hash of the base URL and the token.

    The same token against the sandbox and against Callbell are two accounts; the token cannot be
    read back from the name.
    """
    return hashlib.sha256(f"{base_url}\n{token}".encode()).hexdigest()[:32]


#: The account's schedule in a redis-family storage, one atomic step: the time (microseconds, the
#: server's clock, so that hosts whose clocks differ agree) at which the account's next request may
#: start. ``ARGV[1]`` spaces requests (take the next place: the wait until it is returned), or
#: ``ARGV[2]`` pushes the schedule past a pause (a ``429``); a stored value that is not a number or
#: lies beyond ``ARGV[3]`` (:data:`SCHEDULE_HORIZON`) counts as none. The key expires once the
#: schedule is in the past, so an idle account leaves nothing behind.
_SCHEDULE_SCRIPT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local next_start = tonumber(redis.call('GET', KEYS[1])) or now
if next_start ~= next_start or next_start < now or next_start > now + tonumber(ARGV[3]) then
  next_start = now
end
local interval, pause = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
if pause > 0 then
  next_start = math.max(next_start, now + pause)
else
  wait = next_start - now
  next_start = next_start + interval
end
redis.call('SET', KEYS[1], string.format('%.0f', next_start), 'PX', math.floor((next_start - now) / 1000) + 1000)
return wait
"""


class _MemorySchedule:
    """``_SCHEDULE_SCRIPT`` for ``memory://``: one process's accounts (tests, a single scheduler)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_start: dict[str, float] = {}

    def __call__(self, account: str, interval: float, pause: float) -> float:
        with self._lock:
            now = time.monotonic()
            next_start = max(self._next_start.get(account, now), now)
            if pause:
                self._next_start[account] = max(next_start, now + pause)
                return 0.0
            self._next_start[account] = next_start + interval
            return next_start - now


class SharedStorage:
    """The schedule of each account kept in one storage, shared by every process that names it.

    The schedule is the time at which the account's next request may start (a generic cell rate
    algorithm): a request takes the next place, one :data:`ACCOUNT_RPS`-th of a second after the
    previous one's, and waits until then. So the account's requests go out evenly spaced, whichever
    process sends them, and any one second holds at most :data:`ACCOUNT_RPS` (+1) starts, as a moving
    window would; unlike a moving window it never lets them out in a burst when places free up (a
    burst that the server, counting arrivals, sees bunched further by the network and its own load,
    and answers with ``429``). One place is one round trip, never a look that has to be repeated.

    Made once per storage URI per process (:func:`shared_storage`), so that every hook of a process
    shares one connection pool. It also knows whether the storage answers: after a failure every gate
    using it falls back to its in-process gate for :data:`STORAGE_RETRY_SECONDS`, with one warning per
    outage, and asks again after that.
    """

    def __init__(self, uri: str, password: str | None = None) -> None:
        try:
            from limits import storage as limits_storage
            from limits.errors import ConfigurationError, StorageError
        except ImportError:
            raise _config_error(
                "needs the limits package and its Redis client: install the provider's [redis] extra "
                "(pip install 'limits[redis]')"
            ) from None
        shown = redact_url(uri)  # the URI as given: the password, if any, is merged in below only
        uri = with_password(uri, password)
        scheme = urlsplit(uri).scheme
        options: dict[str, Any] = {"wrap_exceptions": True}
        if scheme in ("redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix"):
            options |= {"socket_timeout": STORAGE_TIMEOUT, "socket_connect_timeout": STORAGE_TIMEOUT}
        try:
            storage = limits_storage.storage_from_string(uri, **options)
        except ConfigurationError as err:  # an unknown scheme, or its client library missing
            raise _config_error(f"{shown!r} is not usable: {redact_uri_in(str(err), uri)}") from None
        self.uri = shown
        self._errors: tuple[type[BaseException], ...] = (StorageError,)
        self._schedule: Callable[[str, float, float], float]
        if isinstance(storage, limits_storage.RedisStorage):  # redis, valkey, sentinel and cluster URIs
            script = storage.get_connection().register_script(_SCHEDULE_SCRIPT.encode())
            base = storage.base_exceptions
            self._errors += base if isinstance(base, tuple) else (base,)

            def schedule(account: str, interval: float, pause: float) -> float:
                key = f"callbell:schedule:{account}"
                args = [round(interval * 1e6), round(pause * 1e6), round(SCHEDULE_HORIZON * 1e6)]
                return int(script(keys=[key], args=args)) / 1e6

            self._schedule = schedule
        elif isinstance(storage, limits_storage.MemoryStorage):
            self._schedule = _MemorySchedule()
        else:
            raise _config_error(
                f"{shown!r} cannot keep a shared schedule; use redis://... (or memory:// in tests)"
            )
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic; while it is ahead, the storage is not asked
        self._down = False  # an outage was reported and has not ended

    def take_place(self, account: str) -> float:
        """Take the account's next place: the seconds until it comes (``0.0``: now). One round trip.

        The caller waits that long, then sends: the place is its own, nobody else's.
        """
        return self._schedule(account, 1.0 / ACCOUNT_RPS, 0.0)

    def pause(self, account: str, seconds: float) -> None:
        """Hold ``account``'s requests in every process for ``seconds`` from now.

        A pause never shortens one in force, nor frees the places already taken after it.
        """
        self._schedule(account, 1.0 / ACCOUNT_RPS, max(seconds, _MIN_WAIT))

    def call(self, what: Callable[[], float | None], log: Log) -> float | None:
        """Run one storage call; ``None`` when the storage is down (this process then uses its own gate)."""
        if self._down_until > time.monotonic():
            return None
        try:
            result = what()
        except self._errors as err:
            with self._lock:
                self._down_until = time.monotonic() + STORAGE_RETRY_SECONDS
                first, self._down = not self._down, True
            if first:
                cause = getattr(err, "storage_error", None) or err
                log.warning(
                    "Callbell: the shared rate limit storage %s does not answer (%s); this process "
                    "keeps its own rate gate, Callbell's 429 answers stay the backstop, and the storage "
                    "is asked again every %g s",
                    self.uri,
                    type(cause).__name__,
                    STORAGE_RETRY_SECONDS,
                )
            return None
        if self._down:
            with self._lock:
                self._down = False
            log.info("Callbell: the shared rate limit storage %s answers again", self.uri)
        return result


def redact_uri_in(text: str, uri: str) -> str:
    """``text`` with ``uri`` redacted, and every credential it holds (raw or unquoted) as ``***``."""
    return redact(text.replace(uri, redact_url(uri)), *url_secrets(uri))


def with_password(uri: str, password: str | None) -> str:
    """``uri`` with ``password`` (the ``rate_limit_storage_password`` extra) as its userinfo password.

    ``redis://redis:6379/1`` and ``pw`` make ``redis://:pw@redis:6379/1``; a user name in the URI is
    kept. The password is quoted, so any character is fine. The result is never logged.
    """
    if password is None:
        return uri
    parts = urlsplit(uri)
    user, _, host = parts.netloc.rpartition("@")
    userinfo = f"{user.partition(':')[0]}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


_storages: dict[tuple[str, str | None], SharedStorage] = {}
_storages_lock = threading.Lock()


def shared_storage(uri: str, password: str | None = None) -> SharedStorage:
    """The :class:`SharedStorage` of ``uri`` (and its password) in this process, made on first use."""
    with _storages_lock:
        storage = _storages.get((uri, password))
        if storage is None:
            storage = _storages[uri, password] = SharedStorage(uri, password)
        return storage


def _config_error(problem: str) -> CallbellConnectionConfigError:
    return CallbellConnectionConfigError(f"extra 'rate_limit_storage' {problem}")


class SharedRateGate(RateGate):
    """The hook's :class:`RateGate`, plus the account's schedule in a storage shared by every process.

    A request first passes the hook's own gate (a bulk send's spacing, this process's pause), then
    takes the account's next place in the shared schedule and waits for it (see
    :class:`SharedStorage`). While the storage does not answer, the hook's own gate is all there is.

    :param storage: the process's storage of the connection's ``rate_limit_storage``.
    :param account: :func:`account_id` of the connection.
    :param log: where the storage's outage and recovery are reported.
    """

    def __init__(
        self,
        storage: SharedStorage,
        account: str,
        *,
        log: Log,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep)
        self.storage = storage
        self._account = account
        self._log = log

    def _take_place(self) -> float:
        return self.storage.call(lambda: self.storage.take_place(self._account), self._log) or 0.0

    def acquire(self) -> None:
        """Pass the hook's gate, then take the account's next place and wait for it."""
        late_once = False
        while True:
            super().acquire()
            place = self._clock() + (wait := self._take_place())
            if wait > 0:
                self._sleep(wait)
            with self._lock:
                if self._paused_until > self._clock():
                    # Another thread of this process met a 429 while this one waited for its place:
                    # rather than go out into the pause (and be refused in turn), wait it out and
                    # take a new place.
                    continue
            if not late_once and self._clock() - place > LATE_SECONDS:
                late_once = True  # woken late (LATE_SECONDS): a new place rather than a bunch
                continue
            return

    def pause(self, seconds: float) -> None:
        """Hold this hook's requests, and every process's requests for the account, ``seconds`` from now."""
        super().pause(seconds)
        self.storage.call(lambda: self.storage.pause(self._account, seconds), self._log)

    async def aacquire(self) -> None:
        """:meth:`acquire` for the triggerer: the round trip runs in a thread, off the event loop."""
        if (wait := await asyncio.to_thread(self._take_place)) > 0:
            await asyncio.sleep(wait)

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` for the triggerer, off the event loop: the other processes wait it out too."""
        await asyncio.to_thread(
            self.storage.call, lambda: self.storage.pause(self._account, seconds), self._log
        )


def gate_for(
    settings: CallbellSettings, *, log: Log, clock: Callable[[], float], sleep: Callable[[float], None]
) -> RateGate:
    """The gate of a hook: shared by every process when the connection names a ``rate_limit_storage``.

    :raises CallbellConnectionConfigError: the storage URI is not one ``limits`` can keep a moving
        window in, or ``limits`` is not installed; before any request.
    """
    if settings.rate_limit_storage is None:
        return RateGate(clock=clock, sleep=sleep)
    storage = shared_storage(settings.rate_limit_storage, settings.rate_limit_storage_password)
    return SharedRateGate(
        storage, account_id(settings.base_url, settings.token), log=log, clock=clock, sleep=sleep
    )
