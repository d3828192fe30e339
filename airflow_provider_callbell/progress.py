"""Where a bulk send's progress lives between the tries of one task instance: an Airflow Variable.

Why a Variable: Airflow 3 clears a task instance's XComs when its next try starts, so XCom cannot
carry anything from one try to the next; a Variable survives the retry, and every worker (Celery,
Kubernetes, another machine) reads the same one through Airflow's API server.

- Key: ``callbell_progress/<dag_id>/<task_id>/<run_id>/<map_index>`` (hashed when longer than
  Airflow's 250 characters), so each mapped task instance of each run has its own.
- Value (JSON): a digest of every message's recipient and channel in order, the message count, the
  indices already sent as ``[start, stop)`` ranges, the indices whose delivery is unknown (a ``500``
  or no answer after sending: they may have gone out) likewise, and, for sends of at most
  ``uuids_kept_max`` messages, the uuids of the sent ones. Never a phone number, a message text or
  the token.
- Written in batches: once :data:`FLUSH_EVERY` more messages were sent or :data:`FLUSH_SECONDS`
  passed, and when the try ends in any way Python sees (success, failure, task timeout, and SIGTERM
  through the operator's ``on_kill``).
  A worker killed outright (SIGKILL, a lost node) loses at most the last batch, which the next try
  sends again.
- Deleted when the task instance succeeds. A task that fails for good keeps it, so that clearing the
  task later still resumes where it stopped; delete it by hand (``airflow variables delete <key>``)
  to send to everyone again. ``airflow variables list`` shows the ones left.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.bulk import DELIVERY_UNKNOWN, is_delivery_unknown
from airflow_provider_callbell.exceptions import CallbellError
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
#: What a message stands at in the Variable: not recorded (to send), sent, or delivery unknown.
_UNSENT, _SENT, _UNKNOWN = 0, 1, 2
#: The result given to a message whose delivery an earlier try left unknown.
UNKNOWN_EARLIER: dict[str, Any] = {
    "error": "an earlier try of this task got no clear answer for this message (a 500 or no answer "
    "after sending), so it may have gone out",
    "status_code": None,
    DELIVERY_UNKNOWN: True,
}


def progress_key(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The Variable key of one task instance's bulk send progress."""
    key = f"{KEY_PREFIX}{dag_id}/{task_id}/{run_id}/{map_index}"
    if len(key) <= KEY_MAX_CHARS:
        return key
    return KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


class VariableProgress:
    """A :class:`~airflow_provider_callbell.bulk.BulkProgress` kept in an Airflow Variable.

    :param key: the Variable key; :meth:`for_task_instance` derives it from a task instance.
    :param uuids_kept_max: keep the uuids of sent messages (so a retry can return them) only for
        sends of at most this many messages; bigger ones keep the indices alone.
    :param clock: a monotonic clock, for the time between two writes.
    """

    def __init__(
        self, key: str, *, uuids_kept_max: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.key = key
        self.uuids_kept_max = uuids_kept_max
        self._clock = clock
        self._digest = ""
        self._state = bytearray()  # one byte per message: _UNSENT, _SENT or _UNKNOWN
        self._uuids: dict[int, str] | None = None
        self._unsaved = 0
        self._saved_at = clock()
        self.stored = False  # whether the Variable exists (read or written by this try)

    @classmethod
    def for_task_instance(cls, ti: Any, **kwargs: Any) -> VariableProgress:
        return cls(progress_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index), **kwargs)

    def begin(self, total: int, recipients_digest: str) -> dict[int, dict[str, Any]]:
        """Read what earlier tries sent; refuse progress recorded for other recipients."""
        self._digest = recipients_digest
        self._state = bytearray(total)
        self._uuids = {} if total <= self.uuids_kept_max else None
        # The default goes by position: Airflow 3 names it ``default``, Airflow 2 ``default_var``.
        stored = Variable.get(self.key, None, deserialize_json=True)
        if stored is None:
            return {}
        self.stored = True
        if not isinstance(stored, dict) or (stored.get("recipients_digest"), stored.get("total")) != (
            recipients_digest,
            total,
        ):
            raise CallbellError(
                f"Variable {self.key!r} records an earlier try of this task that sent to other recipients "
                f"than these {total}, so which of them were reached is unknown and nothing was sent. "
                "Restore the earlier recipients to resume, or delete the Variable to send to all of them."
            )
        uuids: dict[str, str] = stored.get("uuids") or {}
        earlier: dict[int, dict[str, Any]] = {}
        for start, stop in stored.get("unknown", ()):
            for index in range(start, stop):
                self._state[index] = _UNKNOWN
                earlier[index] = dict(UNKNOWN_EARLIER)
        for start, stop in stored["sent"]:
            for index in range(start, stop):
                self._state[index] = _SENT
                uuid = uuids.get(str(index))
                if uuid is None:
                    earlier[index] = {"status": SENT_EARLIER}
                    continue
                earlier[index] = {"uuid": uuid, "status": SENT_EARLIER}
                if self._uuids is not None:
                    self._uuids[index] = uuid
        return earlier

    def record(self, index: int, result: dict[str, Any]) -> None:
        """Note a sent message, or one whose delivery is unknown; write in batches.

        Plain failures are not noted: a retry sends them again.
        """
        if "uuid" in result:
            self._state[index] = _SENT
            if self._uuids is not None:
                self._uuids[index] = result["uuid"]
        elif is_delivery_unknown(result):
            self._state[index] = _UNKNOWN
        else:
            return
        self._unsaved += 1
        if self._unsaved >= FLUSH_EVERY or self._clock() - self._saved_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the Variable if anything was sent since the last write."""
        if not self._unsaved:
            return
        value: dict[str, Any] = {
            "recipients_digest": self._digest,
            "total": len(self._state),
            "sent": _ranges(self._state, _SENT),
        }
        unknown = _ranges(self._state, _UNKNOWN)
        if unknown:
            value["unknown"] = unknown
        if self._uuids is not None:
            value["uuids"] = {str(index): uuid for index, uuid in sorted(self._uuids.items())}
        Variable.set(
            self.key,
            json.dumps(value, separators=(",", ":")),
            description="Messages that earlier tries of this task sent (airflow-provider-callbell); "
            "deleted when the task succeeds",
        )
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
