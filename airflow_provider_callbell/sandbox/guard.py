"""What the sandbox lets in over HTTP, decided from the request's line and headers.

Why it exists: the sandbox is a web server on a developer's machine, and every web page that developer
visits can make their browser send it requests. Without these checks a page could post an inbound
"YES" that a waiting reply sensor accepts, change the fault knobs or wipe the inbox (a cross-site
``text/plain`` POST is a "simple" request: the browser sends it without asking first), read every
stored message after pointing its own name at 127.0.0.1 (DNS rebinding: the browser then thinks the
sandbox is that page's own origin), or have the sandbox read and keep a body of any size. So:

* **the body is capped before it is read** (:func:`body_length`, called first of all, before the
  token check): a ``Content-Length`` over :data:`MAX_BODY_BYTES`, a missing or malformed one with a
  body, or a body of unknown length (``Transfer-Encoding``) is refused without reading a byte of it;
* **the Host header must name this sandbox** (:meth:`Guard.refusal`): a loopback name
  (``127.0.0.1``, ``localhost``, ``[::1]``), the address it listens on, or a name it was told to
  answer to (``allowed_hosts``, ``--allowed-host``), each at the port it listens on. A rebound name
  is none of these;
* **state-changing requests must come from the sandbox's own page or from a program**: a request
  whose ``Origin`` is another origin (or ``null``), or whose ``Sec-Fetch-Site`` says it comes from
  another site, is refused; browsers set both, programs (``requests``, ``curl``) set neither;
* **the sandbox's own state-changing routes take JSON only** (``Content-Type: application/json``),
  which a page of another origin cannot send without a CORS preflight that the sandbox never grants.

The Callbell routes under ``/v1`` keep answering any content type as Callbell would; their bearer
token already needs a header that no cross-site page can send without that preflight.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from airflow_provider_callbell.sandbox.answers import Answer, error

if TYPE_CHECKING:
    from collections.abc import Iterable
    from email.message import Message

#: The largest request body the sandbox reads: far above any Callbell request (a text holds at most
#: 4,096 characters, metadata 10 pairs of 500), far below what would hurt a laptop.
MAX_BODY_BYTES = 1024 * 1024

#: The names a browser on this machine uses for a sandbox on loopback.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

#: Methods that change nothing, so that a cross-site request may make them (a link to the inbox).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: ``Sec-Fetch-Site`` values of a request the sandbox's own page made, or a person typed.
OWN_SITES = frozenset({"same-origin", "none"})

_CLOSE = {"Connection": "close"}  # the body was not read: the connection cannot carry another request


class Refused(Exception):
    """A request refused before its body was read; the connection must be closed after ``answer``."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def body_length(headers: Message) -> int:
    """The number of body bytes to read, or :class:`Refused` without reading any of them.

    :raises Refused: ``411`` for a body of unknown length (``Transfer-Encoding``, chunked or not: the
        server would otherwise read until the client stops), ``400`` for a malformed or repeated
        ``Content-Length``, ``413`` for one over :data:`MAX_BODY_BYTES`.
    """
    if headers.get_all("Transfer-Encoding"):
        raise Refused(_refused(411, "Transfer-Encoding", "is not accepted; send a Content-Length"))
    values = headers.get_all("Content-Length") or ["0"]
    value = values[0].strip()
    if len(set(values)) > 1 or not (value.isascii() and value.isdigit()):
        raise Refused(_refused(400, "Content-Length", "must be one non-negative integer"))
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise Refused(
            _refused(
                413, "Content-Length", f"{length} bytes is over the sandbox's {MAX_BODY_BYTES}-byte limit"
            )
        )
    return length


class Guard:
    """Decides from its headers whether a request may reach the sandbox's routes.

    :param listen_host: the address the sandbox listens on; its own name is accepted in ``Host``.
    :param port: the port it listens on (bound, so never 0).
    :param allowed_hosts: more names to answer to, e.g. a docker-compose service name; ``NAME``
        means NAME at ``port``, ``NAME:PORT`` that port (a proxy or a published port in front).
    """

    def __init__(self, listen_host: str, port: int, allowed_hosts: Iterable[str] = ()) -> None:
        names = [*LOOPBACK_NAMES, _bracketed(listen_host), *allowed_hosts]
        self.hosts = frozenset(_with_port(name.strip().lower(), port) for name in names if name.strip())

    def refusal(self, method: str, path: str, headers: Message) -> Answer | None:
        """Why this request may not reach a route (an answer to send instead), or ``None``."""
        hosts = headers.get_all("Host") or [""]
        host = hosts[0].strip().lower()
        # No port in Host means the default one, 80. The answer names no accepted name: a page that
        # rebound its own name reads it.
        if len(hosts) > 1 or _with_port(host, 80) not in self.hosts:
            return error(
                400,
                "Host",
                "must name this sandbox: 127.0.0.1, localhost or [::1] at its port, its --host, or a "
                "name given to --allowed-host (allowed_hosts=[...])",
            )
        if method.upper() in SAFE_METHODS:
            return None
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in OWN_SITES:
            return error(
                403, "Sec-Fetch-Site", "says another site sent it; the sandbox takes no such request"
            )
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() != f"http://{host}":
            return error(403, "Origin", "is not this sandbox's own page; the sandbox takes no such request")
        if not path.startswith("/v1/") and _media_type(headers) != "application/json":
            return error(
                415, "Content-Type", "must be application/json (send {} when there is nothing to say)"
            )
        return None


def _refused(status: int, field: str, message: str) -> Answer:
    answer = error(status, field, message)
    return Answer(answer.status, answer.body, _CLOSE)


def _media_type(headers: Message) -> str:
    return (headers.get("Content-Type") or "").partition(";")[0].strip().lower()


def _bracketed(address: str) -> str:
    """An IPv6 address as it appears in a Host header (``[::1]``); any other name as it is."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def _with_port(name: str, port: int) -> str:
    """``name`` with an explicit port: its own when it has one, else ``port``."""
    _, bracket, after = name.rpartition("]")
    rest = after if bracket else name
    return name if ":" in rest else f"{name}:{port}"
