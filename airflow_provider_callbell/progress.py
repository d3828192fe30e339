"""Where a send's progress lives between the tries of one task instance: an Airflow Variable.

Why a Variable: Airflow 3 clears a task instance's XComs when its next try starts, so XCom cannot
carry anything from one try to the next; a Variable survives the retry, and every worker (Celery,
Kubernetes, another machine) reads the same one through Airflow's API server.

- Key: ``callbell_progress/<dag_id>/<task_id>/<run_id>/<map_index>`` (hashed when longer than
  Airflow's 250 characters), so each mapped task instance of each run has its own.
- Value (JSON): a digest of every message's recipient and channel in order, the message count, the
  indices already sent as sorted ``[start, stop)`` ranges, the indices whose delivery is unknown (a
  ``500`` or no answer after sending: they may have gone out) likewise, the indices claimed and not
  answered yet likewise, and, for sends of at most ``uuids_kept_max`` messages, the uuids of the sent
  ones. The single-message operator adds when its first unanswered attempt started and a keyed digest
  of each text it tried (:func:`text_digest`), to find the message in the conversation. Never a phone
  number, a message text or the token.
- **Claimed before sent (write-ahead).** A bulk send hands no message to a worker thread before the
  Variable records it as claimed: :meth:`VariableProgress.claim` writes the next block of
  :func:`claim_block` messages (about :data:`FLUSH_SECONDS` of sending at the send's ``max_rps``, at
  most :data:`FLUSH_EVERY`: 500 at the default 285/s) and returns only once the write is done; the one
  thread that hands messages out waits for it, while the workers go on with the at most two
  messages each already handed to them. One write per block, which also carries every answer
  recorded so far. An answer turns a claim into sent or unknown; a plain failure (nothing went out)
  and a message the send stopped before starting release it. A later try reads a claim that has no
  answer as delivery unknown (:data:`CLAIMED_EARLIER`): under ``at_most_once`` it is not sent again,
  and it is counted and reported as ``unknown``; under ``at_least_once`` it is sent again.
- Answers are also written every :data:`FLUSH_SECONDS` (and every :data:`FLUSH_EVERY` of them when
  nothing claims, as the single-message operator does not), and when the try ends in any way Python
  sees (success, failure, task timeout, and SIGTERM through the operator's ``on_kill``, which stops
  the send: the ones in flight finish and are recorded, the claimed ones not started are released).
- A worker killed outright (SIGKILL, a lost node) writes nothing more: the messages it had claimed
  and not written an answer for (at most one block plus the messages in flight when that block was
  claimed, two per worker thread: 500 + 64 at the defaults) are unknown to the next try, which does
  not send them under ``at_most_once``. Some of them were sent and some not: nothing is sent twice,
  and a person checks the unknown ones. The single-message operator does not claim (it would cost a
  Variable write per message): its send killed outright is sent again by the retry.
- Deleted when the task instance succeeds. A task that fails for good keeps it, so that clearing the
  task later still resumes where it stopped; delete it by hand (``airflow variables delete <key>``)
  to send to everyone again. ``airflow variables list`` shows the ones left.

**Fail closed.** The value is read as raw text (Airflow 3's ``deserialize_json=True`` logs a JSON
error and returns the default, which would read as "nothing sent yet") and checked here: a JSON
object with exactly the known members, of the right types, ranges sorted, disjoint and within the
message count, uuids that look like uuids, and no longer than the most this send could write
(:func:`value_max_chars`). Checking and loading take time linear in the value's size and the message
count. A value that fails any check is not a record of anything: under ``at_most_once`` the try sends
nothing and raises :class:`~airflow_provider_callbell.exceptions.CallbellProgressError`, naming the
Variable and the ways on (delete it to send everything again, or ``delivery="at_least_once"``);
under ``at_least_once`` it is set aside with a warning, and every message is sent. An absent
Variable is a first try.

**Two writers.** A try that Airflow believes dead can still be running (a stalled worker, a zombie)
and write after a later try did. Every write therefore reads the Variable first and merges: the
indices either one recorded as sent are sent, the unknown ones stay unknown unless one of them saw
the message sent, and uuids are kept from both. So a late writer adds its record to the later one's
instead of replacing it. Airflow's Variables have no compare-and-set, so two writes whose
read-then-write windows overlap (a few milliseconds each) can still drop the batch of one of them;
a value that is not a usable record when a write reads it (junk, other recipients) is replaced with
a warning. Claims merge the same way: sent wins over a claim (a stale try's claim never turns what
a later try sent into unknown), an unknown answer over a claim, a claim over nothing; a message
another writer also claimed or answered is no longer this try's alone to release. A stale try that
goes on sending claims blocks past what the later try read at its start, so both may send those
(the claims narrow the window, without compare-and-set they cannot close it). A merge cannot bring
back a record the task deleted on success: a late writer then leaves a Variable holding only its own
record (harmless: those messages were sent).
With ``[secrets] use_cache = True`` Airflow may serve the first read of a write from its cache (a
stale copy of this try's own claims then reads as another try's: some messages may be reported
unknown that were never sent, never the other way round).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.bulk import DELIVERY_UNKNOWN, is_delivery_unknown
from airflow_provider_callbell.exceptions import CallbellProgressError
from airflow_provider_callbell.validation import UUID_PATTERN as _UUID  # the one uuid check
from airflow_provider_callbell.version_compat import Variable

if TYPE_CHECKING:
    from collections.abc import Callable

KEY_PREFIX = "callbell_progress/"
#: Airflow's limit on a Variable key.
KEY_MAX_CHARS = 250
FLUSH_EVERY = 500
FLUSH_SECONDS = 2.0
#: The status given to a message that an earlier try sent, in place of Callbell's answer.
SENT_EARLIER = "sent_in_earlier_try"
#: What a message stands at in the Variable: not recorded (to send), sent, delivery unknown, or claimed:
#: a try was about to send it and had not recorded its answer (read by a later try as unknown).
_UNSENT, _SENT, _UNKNOWN, _CLAIMED = 0, 1, 2, 3
#: The result given to a message whose delivery an earlier try left unknown.
UNKNOWN_EARLIER: dict[str, Any] = {
    "error": "an earlier try of this task got no clear answer for this message (a 500 or no answer "
    "after sending), so it may have gone out",
    "status_code": None,
    DELIVERY_UNKNOWN: True,
}
#: The result given to a message that an earlier try claimed and never recorded an answer for.
CLAIMED_EARLIER: dict[str, Any] = {
    "error": "an earlier try of this task stopped (its worker killed?) after it may have sent this "
    "message and before it recorded the answer, so it may have gone out",
    "status_code": None,
    DELIVERY_UNKNOWN: True,
}
#: The most text digests one record keeps (one per try of a single message that got no clear answer).
TEXTS_KEPT_MAX = 16
#: What a stored value may be longer than the most its send could write: the other members, slack.
_VALUE_BASE_CHARS = 4096 + TEXTS_KEPT_MAX * 70
#: Per message, at most one range of any member (``[1234567,1234568],``: each index starts at most one
#: run, whether sent, unknown or claimed) and one uuid (``"1234567":"<36>",``).
_VALUE_CHARS_PER_MESSAGE = 100
_MEMBERS = {
    "recipients_digest",
    "total",
    "sent",
    "unknown",
    "claimed",
    "uuids",
    "unknown_since",
    "unknown_texts",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")

log = logging.getLogger(__name__)


def claim_block(per_second: float | None) -> int:
    """How many messages one claim covers: about :data:`FLUSH_SECONDS` of sending at ``per_second``
    (so one Variable write per block), never more than :data:`FLUSH_EVERY` (what a SIGKILL may leave
    unknown); :data:`FLUSH_EVERY` when the rate is not known."""
    if per_second is None:
        return FLUSH_EVERY
    return max(1, min(FLUSH_EVERY, math.ceil(FLUSH_SECONDS * per_second)))


def progress_key(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The Variable key of one task instance's send progress."""
    key = f"{KEY_PREFIX}{dag_id}/{task_id}/{run_id}/{map_index}"
    if len(key) <= KEY_MAX_CHARS:
        return key
    return KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def value_max_chars(total: int) -> int:
    """The longest value a send of ``total`` messages can write; anything longer is not its record."""
    return _VALUE_BASE_CHARS + _VALUE_CHARS_PER_MESSAGE * total


def text_digest(text: str, key: str) -> str:
    """What a record keeps of a message's text: enough to recognise it, not to read it.

    An HMAC-SHA256 keyed with the connection's token, not a plain hash: anyone who can read Variables
    could otherwise try every value of a short text ("your code is 483920") against the digest.
    """
    return hmac.new(key.encode(), text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


@dataclass
class Record:
    """One checked progress value: each message's state, the sent ones' uuids, the unanswered attempts.

    :param state: one byte per message: ``_UNSENT``, ``_SENT``, ``_UNKNOWN`` or ``_CLAIMED``.
    :param uuids: the uuids of sent messages, by index.
    :param unknown_since: when (Unix seconds) the first attempt that got no clear answer started.
    :param unknown_texts: the :func:`text_digest` of the texts those attempts sent.
    :param mine: the ``_CLAIMED`` messages this try claimed itself and has no answer for yet, which it
        may release (not started after all, or a plain failure); never stored. A claim read from the
        Variable is another try's (or an earlier one's): it stays until a try records the message sent.
    """

    state: bytearray
    uuids: dict[int, str] = field(default_factory=dict)
    unknown_since: int | None = None
    unknown_texts: list[str] = field(default_factory=list)
    mine: set[int] = field(default_factory=set)

    def merge(self, other: Record) -> None:
        """Add what ``other`` records: sent wins over all; unknown over claimed and nothing; claimed over
        nothing. A message ``other`` has unknown or claimed is no longer this try's alone to release."""
        for start, stop in _ranges(other.state, _SENT):
            self.state[start:stop] = bytes([_SENT]) * (stop - start)
        for start, stop in _ranges(other.state, _UNKNOWN):
            block = self.state[start:stop].replace(bytes([_UNSENT]), bytes([_UNKNOWN]))
            self.state[start:stop] = block.replace(bytes([_CLAIMED]), bytes([_UNKNOWN]))
        for start, stop in _ranges(other.state, _CLAIMED):
            self.state[start:stop] = self.state[start:stop].replace(bytes([_UNSENT]), bytes([_CLAIMED]))
        self.mine = {index for index in self.mine if other.state[index] == _UNSENT}
        for index, uuid in other.uuids.items():
            self.uuids.setdefault(index, uuid)
        if other.unknown_since is not None:
            self.unknown_since = min(self.unknown_since or other.unknown_since, other.unknown_since)
        for digest in other.unknown_texts:
            self.note_text(digest)

    def note_text(self, digest: str) -> None:
        if digest not in self.unknown_texts and len(self.unknown_texts) < TEXTS_KEPT_MAX:
            self.unknown_texts.append(digest)

    def to_json(self, recipients_digest: str, keep_uuids: bool) -> str:
        value: dict[str, Any] = {
            "recipients_digest": recipients_digest,
            "total": len(self.state),
            "sent": _ranges(self.state, _SENT),
        }
        for member, state in (("unknown", _UNKNOWN), ("claimed", _CLAIMED)):
            ranges = _ranges(self.state, state)
            if ranges:
                value[member] = ranges
        if keep_uuids:
            value["uuids"] = {str(i): u for i, u in sorted(self.uuids.items()) if self.state[i] == _SENT}
        if self.unknown_since is not None:
            value["unknown_since"] = self.unknown_since
            value["unknown_texts"] = self.unknown_texts
        return json.dumps(value, separators=(",", ":"))


class _Untrusted(Exception):
    """Why a stored value is not a record this send can use (caught and turned into the typed error)."""


class _OtherRecipients(_Untrusted):
    """A well-formed record of another list of recipients (or another message count)."""


def parse_record(raw: Any, total: int, recipients_digest: str) -> Record:
    """Check a stored value and load it, in time linear in its size and ``total``.

    :raises _Untrusted: saying what is wrong; :class:`_OtherRecipients` for a valid record of other
        recipients (or another message count).
    """
    if not isinstance(raw, str):
        raise _Untrusted(f"it is a {type(raw).__name__}, not JSON text")
    if len(raw) > value_max_chars(total):
        raise _Untrusted(f"it is {len(raw)} characters long, more than a send of {total} messages writes")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as err:  # ValueError: not JSON, or an integer of 4,300+ digits
        raise _Untrusted(f"it is not JSON ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise _Untrusted(f"it is a JSON {type(value).__name__}, not an object")
    unknown_members = sorted(set(value) - _MEMBERS)
    if unknown_members:
        raise _Untrusted(
            f"it has members this version does not know: {', '.join(map(repr, unknown_members[:5]))}"
        )
    digest, stored_total = value.get("recipients_digest"), value.get("total")
    if not isinstance(digest, str) or type(stored_total) is not int:
        raise _Untrusted("its recipients_digest or total is missing or of the wrong type")
    if (digest, stored_total) != (recipients_digest, total):
        raise _OtherRecipients(
            f"it records an earlier try that sent to other recipients than these {total}, so which of "
            "them were reached is unknown"
        )
    record = Record(bytearray(total))
    for member, state in (("sent", _SENT), ("unknown", _UNKNOWN), ("claimed", _CLAIMED)):
        _fill(record.state, value.get(member, None if member == "sent" else []), member, state, total)
    uuids = value.get("uuids", {})
    if not isinstance(uuids, dict) or len(uuids) > total:
        raise _Untrusted("its uuids are not an object of at most one uuid per message")
    for index_text, uuid in uuids.items():
        if not (_INDEX.fullmatch(index_text) and isinstance(uuid, str) and _UUID.fullmatch(uuid)):
            raise _Untrusted("its uuids must map message indices to uuids of 32 hex characters")
        index = int(index_text)
        if index >= total or record.state[index] != _SENT:
            raise _Untrusted(f"it gives a uuid for message {index}, which it does not record as sent")
        record.uuids[index] = uuid
    since, texts = value.get("unknown_since"), value.get("unknown_texts")
    if since is not None or texts is not None:
        if type(since) is not int or not 0 < since < 1 << 32:
            raise _Untrusted("its unknown_since is not a time in Unix seconds")
        if not isinstance(texts, list) or len(texts) > TEXTS_KEPT_MAX:
            raise _Untrusted(f"its unknown_texts is not a list of at most {TEXTS_KEPT_MAX} digests")
        if not all(isinstance(t, str) and _SHA256.fullmatch(t) for t in texts):
            raise _Untrusted("its unknown_texts must be SHA-256 digests")
        record.unknown_since, record.unknown_texts = since, list(texts)
    return record


def _fill(state: bytearray, ranges: Any, member: str, mark: int, total: int) -> None:
    """Mark ``ranges`` in ``state``: a list of ``[start, stop)`` pairs, sorted, disjoint, within ``total``,
    and on messages no other member marked. Each index is touched once, by a slice: linear time."""
    if not isinstance(ranges, list):
        raise _Untrusted(f"its {member!r} is missing or not a list of [start, stop) ranges")
    previous_stop = 0
    for pair in ranges:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int and type(pair[1]) is int):
            raise _Untrusted(f"its {member!r} holds {_excerpt(pair)}, not a [start, stop) pair of integers")
        start, stop = pair
        if not previous_stop <= start < stop <= total:
            raise _Untrusted(
                f"its {member!r} range [{start}, {stop}) is out of order, overlaps another or is out of "
                f"bounds for {total} messages"
            )
        if state.count(_UNSENT, start, stop) != stop - start:
            raise _Untrusted(f"its {member!r} range [{start}, {stop}) overlaps messages recorded otherwise")
        state[start:stop] = bytes([mark]) * (stop - start)
        previous_stop = stop


def _excerpt(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class VariableProgress:
    """A :class:`~airflow_provider_callbell.bulk.BulkProgress` kept in an Airflow Variable.

    :param key: the Variable key; :meth:`for_task_instance` derives it from a task instance.
    :param uuids_kept_max: keep the uuids of sent messages (so a retry can return them) only for
        sends of at most this many messages; bigger ones keep the indices alone.
    :param at_least_once: whether a value that cannot be trusted is set aside (every message is sent
        again) rather than stopping the send (the default, at most once).
    :param clock: a monotonic clock, for the time between two writes.
    """

    def __init__(
        self,
        key: str,
        *,
        uuids_kept_max: int = 10_000,
        at_least_once: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.uuids_kept_max = uuids_kept_max
        self.at_least_once = at_least_once
        self._clock = clock
        self._digest = ""
        self.known = Record(bytearray())
        self._unsaved = 0
        self._saved_at = clock()
        self.stored = False  # whether the Variable exists (read or written by this try)
        self._seen: str | None = None  # the value this try last read or wrote: nothing new to merge
        self._claiming = False  # whether this try claims blocks before sending (bulk sends do)

    @classmethod
    def for_task_instance(cls, ti: Any, **kwargs: Any) -> VariableProgress:
        return cls(progress_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index), **kwargs)

    def _keep_uuids(self) -> bool:
        return len(self.known.state) <= self.uuids_kept_max

    def _read(self) -> str | None:
        # Raw text, never deserialize_json (see the module docstring). The default goes by position:
        # Airflow 3 names it ``default``, Airflow 2 ``default_var``.
        raw: str | None = Variable.get(self.key, None)
        return raw

    def _refuse(self, why: str) -> CallbellProgressError:
        return CallbellProgressError(
            f"Variable {self.key!r} cannot be used: {why}; nothing was sent, so that no message goes "
            f"out twice. Check in Callbell what earlier tries sent, then delete the Variable "
            f"(airflow variables delete '{self.key}') to send every message again, or set the "
            "connection's delivery extra to 'at_least_once' to send them all despite it.",
            key=self.key,
        )

    def begin(self, total: int, recipients_digest: str) -> dict[int, dict[str, Any]]:
        """Read what earlier tries sent; refuse a value that cannot be trusted or names other recipients."""
        self._digest = recipients_digest
        self.known = Record(bytearray(total))
        raw = self._read()
        if raw is None:
            return {}
        self.stored = True
        self._seen = raw
        try:
            self.known = parse_record(raw, total, recipients_digest)
        except _Untrusted as err:
            if isinstance(err, _OtherRecipients) or not self.at_least_once:
                raise self._refuse(str(err)) from None
            log.warning(
                "Callbell: Variable %r cannot be used (%s); delivery is 'at_least_once', so every "
                "message is sent, and the Variable replaced at the next write",
                self.key,
                err,
            )
            return {}
        return self._earlier()

    def _earlier(self) -> dict[int, dict[str, Any]]:
        earlier: dict[int, dict[str, Any]] = {}
        for state, result in ((_UNKNOWN, UNKNOWN_EARLIER), (_CLAIMED, CLAIMED_EARLIER)):
            for start, stop in _ranges(self.known.state, state):
                for index in range(start, stop):
                    earlier[index] = dict(result)
        for start, stop in _ranges(self.known.state, _SENT):
            for index in range(start, stop):
                uuid = self.known.uuids.get(index)
                earlier[index] = (
                    {"status": SENT_EARLIER} if uuid is None else {"uuid": uuid, "status": SENT_EARLIER}
                )
        if not self._keep_uuids():
            self.known.uuids.clear()
        return earlier

    def record_attempt(self, started: float, text_digest: str | None) -> None:
        """Note an attempt of one message that got no clear answer: when it started, its text's digest.

        A retry looks for that text in the conversation, from that time on. Written at the next
        :meth:`flush`, with the message's :meth:`record`.
        """
        record = self.known
        record.unknown_since = min(record.unknown_since or int(started), int(started))
        if text_digest is not None:
            record.note_text(text_digest)

    def claim(self, start: int, per_second: float | None) -> int:
        """Record in the Variable, before any of them starts, that the next block of messages may be sent.

        The block runs from ``start`` for :func:`claim_block` messages (about :data:`FLUSH_SECONDS` of
        sending at ``per_second``), and covers only messages not recorded otherwise. Returns once the
        claim is written (with every answer recorded so far, and merged like :meth:`flush`): the end of
        the block, exclusive. A claimed message without a recorded answer is what a later try reads
        as delivery unknown, so a worker killed outright leaves at most this block and the messages
        in flight unknown, never sent twice. If the write fails, the block is released in memory.
        """
        self._claiming = True
        stop = min(len(self.known.state), start + claim_block(per_second))
        block = [index for index in range(start, stop) if self.known.state[index] == _UNSENT]
        for index in block:
            self.known.state[index] = _CLAIMED
        self.known.mine.update(block)
        try:
            self._write()
        except BaseException:
            for index in block:
                self.release(index)
            raise
        return stop

    def release(self, index: int) -> None:
        """Forget this try's claim of a message it did not start after all: a later try sends it."""
        if index in self.known.mine:
            self.known.mine.discard(index)
            if self.known.state[index] == _CLAIMED:
                self.known.state[index] = _UNSENT
                self._unsaved += 1

    def record(self, index: int, result: dict[str, Any]) -> None:
        """Note a sent message, or one whose delivery is unknown; write in batches.

        A plain failure (nothing went out) releases the message's claim: a retry sends it again.
        """
        if "uuid" in result:
            self.known.state[index] = _SENT
            self.known.mine.discard(index)
            if self._keep_uuids():
                self.known.uuids[index] = result["uuid"]
        elif is_delivery_unknown(result):
            self.known.state[index] = _UNKNOWN
            self.known.mine.discard(index)
        else:
            self.release(index)
            return
        self._unsaved += 1
        # With claims, each claim's write carries the answers recorded so far: a block is never more
        # than FLUSH_EVERY messages, so counting here would only add writes.
        by_count = not self._claiming and self._unsaved >= FLUSH_EVERY
        if by_count or self._clock() - self._saved_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the Variable if anything was recorded since the last write, merged with what it holds now."""
        if self._unsaved:
            self._write()

    def _write(self) -> None:
        raw = self._read()
        if raw is not None and raw != self._seen:  # someone else wrote since this try last did
            try:
                self.known.merge(parse_record(raw, len(self.known.state), self._digest))
            except _Untrusted as err:
                log.warning(
                    "Callbell: replacing Variable %r, which is not a usable record: %s", self.key, err
                )
        value = self.known.to_json(self._digest, self._keep_uuids())
        Variable.set(
            self.key,
            value,
            description="Messages that earlier tries of this task sent (airflow-provider-callbell); "
            "deleted when the task succeeds",
        )
        self._seen = value
        self.stored = True
        self._unsaved = 0
        self._saved_at = self._clock()

    def delete(self) -> None:
        """Forget the progress: called once every message of the task instance was sent."""
        if self.stored:
            Variable.delete(self.key)
            self.stored = False


def _ranges(states: bytearray, state: int) -> list[list[int]]:
    """The ``[start, stop)`` runs of indices at ``state``: a few numbers for a send of any size."""
    return [[m.start(), m.end()] for m in re.finditer(re.escape(bytes([state])) + b"+", states)]
