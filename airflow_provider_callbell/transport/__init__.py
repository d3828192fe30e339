"""How the hook talks HTTP, and what it needs to survive a hostile server: one room per concern.

Like httpx, which builds requests and reads answers once in its client and keeps I/O in small
transports, the provider decides what an answer means in one place and moves bytes in two:

- :mod:`~.protocol`: the request's headers, and :func:`~.protocol.decode`, which turns an answer
  into JSON or a typed error; the errors of an unusable answer, of no answer and of no answer in time;
- :mod:`~.sync`: the ``requests`` session a hook keeps, and the one sync send (workers);
- :mod:`~.aio`: the ``httpx`` client of one event loop, and the one async send (triggers);
- :mod:`~.tls`: the CA bundle both trust, and the async side's TLS context, built off the loop;
- :mod:`~.deadline`: one deadline per sync attempt, kept by a watchdog thread;
- :mod:`~.caps`: the size cap, bounded decoding, and :func:`~.caps.redact`, which every piece of
  server text passes before an error, a log line or an event keeps it;
- :mod:`~._urllib3`: every subclass of urllib3 and ``requests`` and every private name they rely on.

Importing this package imports no HTTP library: only :mod:`~.sync` (``requests``, urllib3) and
:mod:`~.aio` (``httpx``, on first use) do. Nothing here is public API.
"""

from __future__ import annotations

from airflow_provider_callbell.transport.caps import (
    ACCEPT_ENCODING,
    MAX_BODY_BYTES,
    BodyTooLargeError,
    BoundedDecoder,
    UnsupportedEncodingError,
    join_capped,
    redact,
)
from airflow_provider_callbell.transport.deadline import WATCHDOG, Deadlines, Watchdog

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_BODY_BYTES",
    "WATCHDOG",
    "BodyTooLargeError",
    "BoundedDecoder",
    "Deadlines",
    "UnsupportedEncodingError",
    "Watchdog",
    "join_capped",
    "redact",
]
