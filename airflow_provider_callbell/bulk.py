"""Sending many messages: every one validated first, then sent concurrently at the account's rate.

``CallbellHook.send_messages`` must honour two rules that pull apart: every message is validated
before the first one is sent, and a generator of a million rows is never held in memory. It does so
in two passes over a spool:

1. one streaming pass pulls each message from the input, validates it and writes the JSON body it
   builds as one line to a spool: a ``SpooledTemporaryFile`` kept in memory up to
   :data:`SPOOL_MEMORY_BYTES`, then moved to an anonymous temporary file that the operating system
   deletes when it is closed or the process ends. An invalid message fails the whole call, naming
   message indices and fields, before a single request;
2. a second pass streams the spool to a thread pool, with at most two messages per worker in flight;
   workers send through the hook's one session, paced by its rate gate.

So memory holds one message while validating, a bounded window while sending, and the compact
results (one small dict per message), which is what the call returns.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol, cast

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellError, CallbellValidationError
from airflow_provider_callbell.ratelimit import DEFAULT_MAX_RPS as DEFAULT_MAX_RPS
from airflow_provider_callbell.ratelimit import Log as Log  # noqa: TC001  (defined with the gate; kept importable)

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from types import TracebackType

    from airflow_provider_callbell.validation import SendMessagePayload

#: The most worker threads of one bulk send; the session's connection pool is sized for it.
MAX_WORKERS = 64
#: Workers by default: enough that answers taking up to :data:`LATENCY_BUDGET` seconds do not slow the
#: rate down (285/s x 0.25 s = 72 in flight), capped here because Callbell usually answers faster.
DEFAULT_MAX_WORKERS = 32
LATENCY_BUDGET = 0.25
#: How much of the spool stays in memory before it moves to a temporary file.
SPOOL_MEMORY_BYTES = 1 << 20
#: How many invalid messages a validation error lists (it counts them all).
INVALID_LISTED = 10
#: How often a running bulk send logs its progress at INFO.
PROGRESS_LOG_SECONDS = 10.0


class BulkProgress(Protocol):
    """Where a bulk send keeps which messages went out, so that a later attempt does not resend them.

    The hook calls every method from the thread that called ``send_messages``, never from a worker.
    """

    def begin(self, total: int, recipients_digest: str) -> Mapping[int, dict[str, Any]]:
        """Called once all messages are validated and before any is sent.

        :param total: how many messages the input holds.
        :param recipients_digest: a hash of every message's recipient and channel, in order, so an
            implementation can tell that indices still mean the same recipients.
        :return: the results of the messages an earlier attempt already sent, by index: these are
            not sent again, and their results are returned as given.
        """
        ...

    def claim(self, start: int, per_second: float | None) -> int:
        """Called before message ``start`` is handed to a worker, when no earlier claim covers it.

        Store, before returning, that the messages from ``start`` on may be sent (a write-ahead claim
        that a later attempt reads as "may have gone out" until an answer is recorded), and return
        where the claimed block ends (exclusive, past ``start``). The send hands no message past it to
        a worker before the next claim returned. ``per_second`` is the send's rate, to size blocks in
        time (``None``: unknown).
        """
        ...

    def release(self, index: int) -> None:
        """Called for a claimed message that was not started after all (the send stopped first)."""
        ...

    def record(self, index: int, result: dict[str, Any]) -> None:
        """Called as each message's result arrives (a message object or a failure record)."""
        ...

    def flush(self) -> None:
        """Called when the send ends, normally or not: store whatever is still unstored."""
        ...


def default_workers(max_rps: float) -> int:
    """The worker count at which ``max_rps`` is reached while answers take up to the latency budget."""
    return max(1, min(DEFAULT_MAX_WORKERS, math.ceil(max_rps * LATENCY_BUDGET)))


def recipient_line(payload: Mapping[str, Any]) -> bytes:
    """What a recipients digest takes of one message: who receives it, on which channel type."""
    return json.dumps([payload.get("to"), payload.get("bsuid"), payload.get("from")]).encode() + b"\n"


def recipients_digest(payloads: Iterable[Mapping[str, Any]]) -> str:
    """The digest :class:`Spool` computes, for messages already in hand (the single-message operator)."""
    digest = hashlib.sha256()
    for payload in payloads:
        digest.update(recipient_line(payload))
    return digest.hexdigest()


class Spool:
    """The built JSON bodies of a bulk send, one line each, and a digest of their recipients."""

    def __init__(self) -> None:
        # Closed by close() / __exit__: the spool outlives the function that fills it.
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, mode="w+b")  # noqa: SIM115
        self._digest = hashlib.sha256()
        self.count = 0

    def add(self, payload: SendMessagePayload) -> None:
        # One line per body: json.dumps escapes any newline inside a string.
        self._file.write(json.dumps(payload, separators=(",", ":")).encode() + b"\n")
        self._digest.update(recipient_line(payload))
        self.count += 1

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        """Each body once, in order. A spool is read once: after its last line it frees its memory
        (or its file) at once, rather than when the bulk send that holds it returns, so that the
        spool and all the results are never held together.
        """
        self._file.seek(0)
        yield from self._file
        self.close()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def spool_messages(messages: Iterable[Any], build: Callable[[Any], SendMessagePayload]) -> Spool:
    """Validate every message with ``build`` in one streaming pass, keeping only the built bodies.

    :raises CallbellValidationError: if any message is invalid, after reading all of them, listing
        the first :data:`INVALID_LISTED` by index and field and counting the rest. Nothing is sent.
    """
    if isinstance(messages, (str, bytes)) or not hasattr(messages, "__iter__") or hasattr(messages, "keys"):
        raise CallbellValidationError(
            f"messages must be an iterable of message objects, got a {type(messages).__name__}"
        )
    spool = Spool()
    invalid: list[str] = []
    invalid_count = total = 0
    try:
        for index, message in enumerate(messages):
            total = index + 1
            try:
                payload = build(message)
            except CallbellValidationError as err:
                invalid_count += 1
                if len(invalid) < INVALID_LISTED:
                    invalid.append(f"messages[{index}]: {err}")
                continue
            if not invalid_count:  # once one is invalid nothing will be sent: keep validating only
                spool.add(payload)
    except BaseException:
        spool.close()
        raise
    if invalid_count:
        spool.close()
        more = f"; and {invalid_count - len(invalid)} more" if invalid_count > len(invalid) else ""
        raise CallbellValidationError(
            f"{invalid_count} of {total} messages are invalid, so none was sent: {'; '.join(invalid)}{more}"
        )
    return spool


class _SharedKeys:
    """Nothing but a source of key-sharing dicts: :func:`compact` returns its instances' ``__dict__``.

    CPython (PEP 412) stores the ``__dict__`` of a class's instances as "split" dicts: the keys live
    once, in a table the class holds, and each dict keeps only its values, a pointer per key. Such a
    dict is an ordinary ``dict`` in every way (JSON, pickling, equality, adding a key); it merely
    takes 96 bytes for Callbell's ``{"uuid", "status"}`` where a dict built otherwise takes 184.
    The object itself is dropped at once; its dict lives on as the result. An implementation
    detail, so ``tests/test_private_apis.py`` checks that it still holds.
    """


def compact(message: Mapping[str, Any]) -> dict[str, Any]:
    """Callbell's message object as a small dict: its keys stored once for all results, short values shared.

    A bulk send keeps one result per message until it returns, so the results are most of its
    memory: a key-sharing dict (see :class:`_SharedKeys`) and the strings that repeat (``"status"``,
    ``"enqueued"``) interned make each result about 190 bytes with its uuid and its place in the
    list, not 280. Only the uuid, which differs in every result, is stored per message.
    """
    result: dict[str, Any] = _SharedKeys().__dict__
    for key, value in message.items():
        result[sys.intern(key)] = sys.intern(value) if isinstance(value, str) and len(value) < 32 else value
    return result


def failure_record(error: CallbellError, payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a bulk send returns for a message that failed: why, the HTTP status, and the recipient.

    No ``uuid``, so callers tell failures from successes; never the body or the token. When Callbell
    may have sent the message all the same (a ``500``, no answer after the request went out), the
    record says so with ``"delivery_unknown": True``: see :func:`is_delivery_unknown`.
    """
    record: dict[str, Any] = {
        "error": f"{type(error).__name__}: {error}",
        "status_code": getattr(error, "status_code", None),
    }
    recipient = "to" if "to" in payload else "bsuid"
    record[recipient] = payload.get(recipient)
    if getattr(error, "maybe_acted_on", False):
        record[DELIVERY_UNKNOWN] = True
    return record


#: The key a result carries when its message may or may not have gone out.
DELIVERY_UNKNOWN = "delivery_unknown"


def is_delivery_unknown(result: Mapping[str, Any]) -> bool:
    """Whether a result is a message whose fate is unknown: it failed, yet it may have been sent.

    Under ``delivery="at_most_once"`` such a message is never sent again, not even by a retry of the
    task: :func:`send_spooled` skips the ones an earlier try left unknown. It still fails the task, so
    that a person checks whether it arrived.
    """
    return bool(result.get(DELIVERY_UNKNOWN))


def _outcome(result: Mapping[str, Any]) -> str:
    """``sent``, ``failed`` or ``unknown`` (failed, but may have gone out): how a result is counted."""
    if is_delivery_unknown(result):
        return "unknown"
    return "failed" if "error" in result else "sent"


def describe_failures(results: Sequence[Mapping[str, Any]], groups: int = 5) -> str:
    """Say how many messages failed and why: counts per error type and status, one example each."""
    reasons: Counter[tuple[str, Any]] = Counter()
    examples: dict[tuple[str, Any], str] = {}
    for index, result in enumerate(results):
        if "error" not in result:
            continue
        reason = (result["error"].split(":", 1)[0], result.get("status_code"))
        reasons[reason] += 1
        if reason not in examples:
            recipient = result.get("to", result.get("bsuid"))
            examples[reason] = f"messages[{index}] to {recipient!r}: {result['error']}"
    parts = [
        f"{count} x {kind}{f' (HTTP {status})' if status is not None else ''}, e.g. {examples[kind, status]}"
        for (kind, status), count in reasons.most_common(groups)
    ]
    if len(reasons) > groups:
        parts.append(f"and {len(reasons) - groups} other kinds of failure")
    return "; ".join(parts)


def send_line(
    line: bytes,
    *,
    post: Callable[[Mapping[str, Any]], dict[str, Any]],
    redact: Callable[[str], str],
    log: Log,
) -> dict[str, Any]:
    """One worker's send of one spooled body with ``post``: a compact result or a failure record.

    It never raises: a failure is that message's record, never the end of the send, even for an
    error nobody foresaw (a bug, an answer of an unknown shape), whose text goes through ``redact``.
    """
    payload = json.loads(line)
    recipient = payload.get("to", payload.get("bsuid"))
    try:
        message = post(payload)
    except CallbellError as err:
        log.debug("Callbell refused a message to %s: %s", recipient, err)
        return failure_record(err, payload)
    except Exception as err:  # a bug or an answer nobody foresaw: this message's failure, not the send's
        unexpected = CallbellAPIError(
            redact(f"unexpected {type(err).__name__}: {err}"), endpoint="POST /messages/send"
        )
        log.warning("Callbell: a message to %s failed: %s", recipient, unexpected)
        return failure_record(unexpected, payload)
    log.debug("Callbell enqueued message %s to %s", message["uuid"], recipient)
    return compact(message)


class _NotStarted(Exception):
    """A message a worker picked up after ``stop`` was set; it was not sent."""


def send_spooled(
    spool: Spool,
    send_one: Callable[[bytes], dict[str, Any]],
    *,
    workers: int,
    progress: BulkProgress | None,
    log: Log,
    stop: threading.Event | None = None,
    resend_unknown: bool = False,
    per_second: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Send every spooled body with ``send_one`` on ``workers`` threads; results in input order.

    What ``progress`` says an earlier attempt sent is not sent again, nor what it left with an unknown
    fate (:func:`is_delivery_unknown`), unless ``resend_unknown`` (``delivery="at_least_once"``).

    Write-ahead: only this thread hands messages to workers, and it hands none that ``progress`` has
    not claimed (:meth:`BulkProgress.claim`, a block at a time, at ``per_second``); it waits for each
    claim to be stored, while the workers go on with the messages already handed to them. Claimed
    messages that never started are released when the send ends.

    ``send_one`` returns a result for each body and never raises for a Callbell failure. When
    ``stop`` is set, when this thread is interrupted (an Airflow task timeout) or when a worker hits
    an unexpected error, no further message starts (one already handed to a worker but not started
    is dropped), the ones in flight finish (each HTTP attempt has a deadline), and their results
    still reach ``progress``, so that a retry does not send them again.

    :raises CallbellError: when ``stop`` was set before every message was attempted.
    """
    earlier = dict(progress.begin(spool.count, spool.digest)) if progress is not None else {}
    unknown = {index for index, result in earlier.items() if is_delivery_unknown(result)}
    if resend_unknown:
        earlier = {index: result for index, result in earlier.items() if index not in unknown}
        unknown = set()
    elif unknown:
        log.warning(
            "Callbell: %d messages got no clear answer in an earlier attempt (or it stopped before it "
            "recorded one) and may have gone out; not sending them again (delivery='at_most_once')",
            len(unknown),
        )
    if len(earlier) > len(unknown):
        log.info(
            "Callbell: %d of %d messages were sent by an earlier attempt; not sending them again",
            len(earlier) - len(unknown),
            spool.count,
        )
    results: list[dict[str, Any] | None] = [None] * spool.count
    for index, result in earlier.items():
        results[index] = result
    pending: dict[Future[dict[str, Any]], int] = {}
    tally = {"sent": 0, "failed": 0, "unknown": 0}
    started = last_log = clock()

    def send_unless_stopped(line: bytes) -> dict[str, Any]:
        if stop is not None and stop.is_set():
            raise _NotStarted  # it waited for a worker while the send was stopped: never sent
        return send_one(line)

    def collect(done: Iterable[Future[dict[str, Any]]]) -> None:
        nonlocal last_log
        for future in done:
            index = pending.pop(future)
            if isinstance(future.exception(), _NotStarted):
                if progress is not None:
                    progress.release(index)
                continue
            result = future.result()  # re-raises a worker's unexpected error here
            results[index] = result
            tally[_outcome(result)] += 1
            if progress is not None:
                progress.record(index, result)
        now = clock()
        if now - last_log >= PROGRESS_LOG_SECONDS:
            last_log = now
            done_count = sum(tally.values())
            log.info(
                "Callbell: %d of %d messages done (%d sent, %d failed, %d unknown), %.0f messages/s",
                done_count + len(earlier),
                spool.count,
                tally["sent"],
                tally["failed"],
                tally["unknown"],
                done_count / max(now - started, 1e-9),
            )

    def check_stop() -> None:
        if stop is not None and stop.is_set():
            raise CallbellError(
                f"the bulk send was stopped after {tally['sent']} messages were sent, {tally['failed']} "
                f"failed and {tally['unknown']} got no clear answer, of {spool.count}; messages not "
                "started yet were not sent"
            )

    claimed_until = handed_until = 0  # messages [0, claimed_until) are claimed; [0, handed_until) handed out
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="callbell-send")
    try:
        for index, line in enumerate(spool):
            if index in earlier:
                continue
            if len(pending) >= 2 * workers:
                collect(wait(pending, return_when=FIRST_COMPLETED).done)
            check_stop()
            if progress is not None and index >= claimed_until:
                claimed_until = progress.claim(index, per_second)  # stored before the message starts
            pending[pool.submit(send_unless_stopped, line)] = index
            handed_until = index + 1
        while pending:
            collect(wait(pending, return_when=FIRST_COMPLETED).done)
            check_stop()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        finished = [(f, i) for f, i in pending.items() if not f.cancelled() and f.exception() is None]
        if progress is not None:
            for future, index in finished:
                progress.record(index, future.result())
            for future, index in pending.items():
                if future.cancelled() or isinstance(future.exception(), _NotStarted):
                    progress.release(index)
        log.warning(
            "Callbell: bulk send interrupted after %d sent, %d failed and %d unknown; %d in flight finished",
            tally["sent"],
            tally["failed"],
            tally["unknown"],
            len(finished),
        )
        raise
    finally:
        pool.shutdown(wait=True)
        if progress is not None:
            for index in range(handed_until, claimed_until):
                if index not in earlier:
                    progress.release(index)  # claimed, never handed to a worker
            progress.flush()
    elapsed = clock() - started
    log.info(
        "Callbell: %d messages sent, %d failed, %d unknown, %d attempted earlier, in %.1f s (%.0f messages/s)",
        tally["sent"],
        tally["failed"],
        tally["unknown"],
        len(earlier),
        elapsed,
        sum(tally.values()) / max(elapsed, 1e-9),
    )
    return cast("list[dict[str, Any]]", results)  # every index is filled: sent now or earlier
