"""Whether a wait that has never reached Callbell should stop waiting: one rule for sensors and triggers.

A sensor keeps asking through failures that pass (no answer, ``429``, ``5xx``). But when no poke has
ever connected (the connection is refused, the host name does not resolve), nothing is listening at
the base URL: a stopped sandbox, a typo in the connection. Waiting out an hour's ``timeout`` would
only hide that. So, until a first answer arrives, a wait counts its failures to connect, and once both
:data:`NEVER_CONNECTED_TRIES` tries and :data:`NEVER_CONNECTED_SECONDS` seconds have passed since the
first of them (whichever is later), it fails with a
:class:`~airflow_provider_callbell.exceptions.CallbellConnectError` naming the host and the likely
cause. Once any answer has arrived (an error status included: something is listening), later network
failures stay transient, as before. A timeout (no answer in time) counts neither way: it does not
prove that nothing listens.

:class:`ConnectWatch` is plain data so that the state can outlive one poke: a sensor in poke mode
keeps it on itself, in reschedule mode in Airflow's task state store (Airflow 3.3+), a trigger in its
serialized arguments (``connected``) and its own attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_callbell.exceptions import (
    AirflowAPIError,
    CallbellConnectError,
    CallbellError,
    CallbellNoAnswerError,
)

#: A wait that never connected fails after at least this many failed tries ...
NEVER_CONNECTED_TRIES = 3
#: ... and at least this many seconds since the first of them.
NEVER_CONNECTED_SECONDS = 60.0


@dataclass
class ConnectWatch:
    """What a wait knows about reaching Callbell: whether it ever did, and its failures to connect so far.

    :param connected: an answer (any HTTP status) arrived once: failures to connect are transient.
    :param failures: failed tries to connect before any answer.
    :param first_failure: Unix time of the first of them.
    """

    connected: bool = False
    failures: int = 0
    first_failure: float | None = None

    @classmethod
    def from_state(cls, state: Any) -> ConnectWatch:
        """The watch a state store gave back; anything unreadable is a fresh watch (it only delays a failure)."""
        if not isinstance(state, dict):
            return cls()
        connected, failures, first = state.get("connected"), state.get("failures"), state.get("first_failure")
        return cls(
            connected=connected is True,
            failures=failures if isinstance(failures, int) and not isinstance(failures, bool) else 0,
            first_failure=float(first)
            if isinstance(first, (int, float)) and not isinstance(first, bool)
            else None,
        )

    def to_state(self) -> dict[str, Any]:
        """Plain JSON, for a state store or a trigger's arguments."""
        return asdict(self)

    def saw(self, error: BaseException | None, now: float) -> CallbellConnectError | None:
        """Record one try's outcome (``None``: an answer arrived); the error to fail with, once the grace is over.

        Only a :class:`~airflow_provider_callbell.exceptions.CallbellConnectError` counts as a failure
        to connect; any other :class:`~airflow_provider_callbell.exceptions.CallbellError` but a missing
        answer means that something answered. An
        :class:`~airflow_provider_callbell.exceptions.AirflowAPIError` (a subclass, from the HITL
        bridge's other server) says nothing about Callbell: it counts neither way.
        """
        if self.connected or isinstance(error, AirflowAPIError):
            return None
        if error is None or (
            isinstance(error, CallbellError) and not isinstance(error, CallbellNoAnswerError)
        ):
            self.connected, self.failures, self.first_failure = True, 0, None
            return None
        if not isinstance(error, CallbellConnectError):
            return None  # a timeout: something may be listening, slowly
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = now
        waited = now - self.first_failure
        if self.failures < NEVER_CONNECTED_TRIES or waited < NEVER_CONNECTED_SECONDS:
            return None
        host = error.host or "the connection's host"
        return CallbellConnectError(
            f"no connection to {host} could be made in {self.failures} tries over {waited:.0f} s, and none "
            f"ever could ({error.reason}). Nothing listens there: is the Callbell sandbox running "
            "(python -m airflow_provider_callbell.sandbox), and is the connection's base URL right?",
            host=error.host,
            endpoint=error.endpoint,
        )
