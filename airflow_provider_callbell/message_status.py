"""What a Callbell delivery status means for a task waiting on it: done, failed, or keep waiting.

One function, :func:`message_outcome`, decides it from the ``message`` object of
``GET /messages/status/:uuid``. The sensor's poke, the trigger (to know when to stop polling) and the
sensor's ``execute_complete`` all call it, so poke mode and deferrable mode cannot disagree. Nothing
here touches the network or imports Airflow beyond the exceptions, and those only on the way to
raising one: the sensors import this module when a DAG file is parsed (their default statuses).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, get_args

MessageStatus = Literal["enqueued", "sent", "delivered", "read", "failed", "mismatch", "deleted"]
MESSAGE_STATUSES: tuple[str, ...] = get_args(MessageStatus)

#: The road of a healthy message. A message further along has passed the earlier steps, so waiting for
#: ``delivered`` is satisfied by ``read`` too: a sensor that starts late must not wait forever.
PROGRESS: tuple[str, ...] = ("enqueued", "sent", "delivered", "read")
#: Where each status stands on that road. ``mismatch`` (WhatsApp corrected the phone number) means
#: the message went out, to the corrected number: it counts as ``sent``, and a delivery may follow.
_RANK = {**{status: rank for rank, status in enumerate(PROGRESS)}, "mismatch": PROGRESS.index("sent")}
#: Statuses that never change again: waiting for anything else after them is pointless.
FINAL_STATUSES: tuple[str, ...] = ("failed", "deleted")

#: How much of Callbell's reason for a failure an error shows.
REASON_MAX_CHARS = 500

DEFAULT_TARGET_STATUSES: tuple[str, ...] = ("delivered", "read")
DEFAULT_FAILURE_STATUSES: tuple[str, ...] = ("failed",)


def check_status_sets(target_statuses: Any, failure_statuses: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return both status lists as tuples, or raise naming the argument at fault.

    One string is one status. Every value must be a status Callbell documents (a typo would make a
    sensor wait until its timeout), there must be a target, and no status may be in both lists.
    """
    from airflow_provider_callbell.exceptions import CallbellValidationError

    targets = _statuses("target_statuses", target_statuses)
    failures = _statuses("failure_statuses", failure_statuses)
    if not targets:
        raise CallbellValidationError(
            f"target_statuses must name at least one status, got {target_statuses!r}"
        )
    both = sorted(set(targets) & set(failures))
    if both:
        raise CallbellValidationError(
            f"target_statuses and failure_statuses must not share a status, got {', '.join(both)} in both"
        )
    return targets, failures


def _statuses(field: str, statuses: Any) -> tuple[str, ...]:
    from airflow_provider_callbell.exceptions import CallbellValidationError

    try:
        values = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    except TypeError:
        raise CallbellValidationError(
            f"{field} must be a status or a list of statuses, got {statuses!r}"
        ) from None
    unknown = [value for value in values if value not in MESSAGE_STATUSES]
    if unknown:
        raise CallbellValidationError(
            f"{field} must be Callbell message statuses ({', '.join(MESSAGE_STATUSES)}), "
            f"got {unknown[0]!r} in {statuses!r}"
        )
    return values


def message_outcome(
    message: Mapping[str, Any], target_statuses: tuple[str, ...], failure_statuses: tuple[str, ...]
) -> str | None:
    """Decide what a message's status means for a waiting task.

    :param message: the ``message`` object of ``GET /messages/status/:uuid``.
    :param target_statuses: the statuses that end the wait successfully.
    :param failure_statuses: the statuses that end it with an error, checked first.
    :return: the status when the message reached a target status (or went past one on the road
        ``enqueued`` → ``sent`` → ``delivered`` → ``read``); ``None`` to keep waiting.
    :raises CallbellMessageFailedError: on a failure status, or on a final status (``failed``,
        ``deleted``) that is not a target, since nothing can change after it.
    """
    status = str(message.get("status"))
    if status in failure_statuses or (status in FINAL_STATUSES and status not in target_statuses):
        from airflow_provider_callbell.exceptions import CallbellMessageFailedError
        from airflow_provider_callbell.transport.caps import printable

        # The hook checked the status and the uuid; the sensor's own callers may pass any mapping.
        uuid = printable(str(message.get("uuid", "?")), limit=64)
        raise CallbellMessageFailedError(uuid, status, failure_reason(message))
    if status in target_statuses:
        return status
    rank = _RANK.get(status)
    if rank is not None and any(rank >= _RANK[target] for target in target_statuses if target in _RANK):
        return status
    return None


def failure_reason(message: Mapping[str, Any]) -> str:
    """Callbell's reason for a status, from ``messageStatusPayload`` (``{"reason": ...}`` for ``failed``).

    It is the server's text, shown in an exception the task logs: escaped, without secrets, at most
    :data:`REASON_MAX_CHARS` characters.
    """
    from airflow_provider_callbell.transport.caps import printable

    payload = message.get("messageStatusPayload")
    if isinstance(payload, Mapping) and payload.get("reason"):
        return printable(str(payload["reason"]), limit=REASON_MAX_CHARS)
    if payload:  # an undocumented shape: show it rather than lose it
        return printable(json.dumps(payload, default=str), limit=REASON_MAX_CHARS)
    return "no reason given"
