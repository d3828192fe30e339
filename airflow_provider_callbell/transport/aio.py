"""The async transport, over ``httpx``: the clients shared on an event loop, and the one async send.

Triggers poll from the triggerer's event loop, where a blocking call would stall every deferred
task. :func:`send` runs the whole attempt under ``asyncio.wait_for`` with the connect timeout plus
the read timeout, reads the raw stream through
:class:`~airflow_provider_callbell.transport.caps.BoundedDecoder` and maps every failure to the same
typed errors as the sync send. It does not retry: a trigger polls again at its own pace and decides
with :attr:`~airflow_provider_callbell.exceptions.CallbellAPIError.is_transient`.

Every trigger of a triggerer polls from one event loop, so they share one ``httpx.AsyncClient`` per
base URL and timeouts (:func:`acquire_client`, :func:`release_client`) instead of opening one each:
500 deferred sensors then hold a few pooled connections rather than 500 clients with a connection
each, whose objects every full garbage collection of the triggerer walks. The token is not part of
a shared client: it travels as a header of each request. A shared client starts a request when one
of its :data:`SLOTS` is free; the others wait their turn, in arrival order, inside their own deadline.

``httpx`` is imported on first use only: a worker that never defers never pays for it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellInvalidResponseError
from airflow_provider_callbell.transport import protocol
from airflow_provider_callbell.transport.caps import (
    BodyTooLargeError,
    BoundedDecoder,
    UnsupportedEncodingError,
    redact,
)
from airflow_provider_callbell.transport.tls import ssl_context

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Mapping

    import httpx

    from airflow_provider_callbell.connection import CallbellSettings
    from airflow_provider_callbell.transport.protocol import TransportLog


#: Requests a shared client runs at once, and the idle connections it keeps (for up to
#: ``KEEPALIVE_SECONDS``). httpcore's pool looks at every connection it holds (a ``poll`` system call
#: for each idle one, and a pass over all of them for each) whenever a request starts or ends: with a
#: connection per request in flight, 500 triggers that start together cost the event loop seconds of
#: CPU in one burst, and each idle connection kept costs every request. A request takes a slot, or
#: waits in a plain queue, first come first served, for one; the wait counts in its deadline
#: (:attr:`~airflow_provider_callbell.connection.CallbellSettings.budget`).
SLOTS = 8
#: A request gives its slot up once it ends or after this long, whichever comes first: slow answers
#: never hold the others back (a Callbell that hangs on some requests), they only open more connections.
SLOT_SECONDS = 1.0
KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True)
class ClientKey:
    """What shapes a shared client: the base URL and the timeouts. Never the token (nor any secret):
    requests with different tokens to the same base URL share a client, each carrying its own
    ``Authorization`` header."""

    base_url: str
    timeout: tuple[float, float]

    @classmethod
    def of(cls, settings: CallbellSettings) -> ClientKey:
        return cls(settings.base_url, settings.timeout)


@dataclass(eq=False)
class SharedClient:
    """An event loop's client for one :class:`ClientKey`: its request slots and how many hold it."""

    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    users: int = 0


#: The shared clients of each event loop that has some. A loop's clients belong to it alone (their
#: connections are its transports). Entries of loops closed while a client was still held (a hook
#: never closed) are dropped when the next client is made.
_CLIENTS: dict[asyncio.AbstractEventLoop, dict[ClientKey, SharedClient]] = {}
_CLIENTS_LOCK = threading.Lock()  # the dict is the process's; event loops may run in several threads


async def acquire_client(settings: CallbellSettings) -> SharedClient:
    """The running loop's shared client for ``settings`` (made on first use), held until
    :func:`release_client`; the caller adds the token to each request (:func:`send` does)."""
    context = await ssl_context()  # the only await: what follows cannot be interrupted half-way
    loop, key = asyncio.get_running_loop(), ClientKey.of(settings)
    with _CLIENTS_LOCK:
        for closed in [other for other in _CLIENTS if other.is_closed()]:
            del _CLIENTS[closed]
        shared = _CLIENTS.setdefault(loop, {}).get(key)
        if shared is None:
            shared = _CLIENTS[loop][key] = SharedClient(_new_client(key, context), asyncio.Semaphore(SLOTS))
        shared.users += 1
    return shared


async def release_client(loop: asyncio.AbstractEventLoop, shared: SharedClient) -> None:
    """Let go of ``shared``, which :func:`acquire_client` gave on ``loop``; the last user closes it.

    The count drops before the one await, so a cancellation during the close cannot leave a user
    counted, and a client being closed is never handed out again. A client of a loop that is no
    longer running is forgotten, not closed: its connections belonged to that loop.
    """
    with _CLIENTS_LOCK:
        clients = _CLIENTS.get(loop, {})
        key = next((key for key, held in clients.items() if held is shared), None)
        if key is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del clients[key]
        if not clients:
            _CLIENTS.pop(loop, None)
    if loop is asyncio.get_running_loop():
        await shared.client.aclose()


def _new_client(key: ClientKey, context: ssl.SSLContext) -> httpx.AsyncClient:
    """A client for ``key``, trusting the process's TLS context; the token is not one of its headers.

    It keeps no cookies: a cookie one connection's answer sets must not travel with another
    connection's token.
    """
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    import httpx

    connect, read = key.timeout
    return httpx.AsyncClient(
        headers=protocol.common_headers(),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(read, connect=connect),
        limits=httpx.Limits(  # the slots pace the requests: none ever waits in httpcore's pool
            max_connections=None,
            max_keepalive_connections=SLOTS,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        follow_redirects=False,  # a redirect must not carry the token elsewhere
        verify=context,
    )


async def send(
    shared: SharedClient,
    settings: CallbellSettings,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None,
    log: TransportLog,
) -> Any:
    """The sync :func:`~airflow_provider_callbell.transport.sync.send` for async code: same URL,
    headers, deadline, body cap, decoding and errors, without retries."""
    import httpx

    endpoint = f"{method} {path}"
    error: CallbellAPIError | None = None
    try:
        response, body = await asyncio.wait_for(
            _read(shared, method, settings.base_url + path, params, protocol.auth_header(settings.token)),
            timeout=settings.budget,
        )
        _raise_if_cancelled()
    except asyncio.TimeoutError:
        error = protocol.out_of_time_error(settings, endpoint)
    except httpx.HTTPError as err:
        refused = isinstance(err, httpx.ConnectError)  # refused, unresolved: nothing was sent
        error = protocol.no_answer_error(
            settings.token,
            endpoint,
            err,
            maybe_acted_on=not refused,
            timed_out=isinstance(err, httpx.TimeoutException),
            unreachable=protocol.address(settings) if refused else None,
        )
    except BodyTooLargeError as err:
        error = protocol.too_large_error(settings.token, endpoint, err)
    except UnsupportedEncodingError as err:  # it quotes the answer's Content-Encoding: server text
        error = CallbellInvalidResponseError(redact(str(err), settings.token), endpoint=endpoint)
    if error is not None:
        raise error  # outside the except blocks: no __context__ holding the request
    return protocol.decode(settings, endpoint, response, body, log)


@asynccontextmanager
async def _slot(slots: asyncio.Semaphore) -> AsyncIterator[None]:
    """One of ``slots``, held until the block ends or for ``SLOT_SECONDS``, whichever comes first."""
    await slots.acquire()
    held = True

    def give_up() -> None:
        nonlocal held
        if held:
            held = False
            slots.release()

    timer = asyncio.get_running_loop().call_later(SLOT_SECONDS, give_up)
    try:
        yield
    finally:
        timer.cancel()
        give_up()


def _raise_if_cancelled() -> None:
    """Raise the cancellation ``asyncio.wait_for`` lost: before Python 3.12 it returns the result, and
    drops the cancellation, when both come in the same step of the loop. A triggerer that cancels a
    trigger (moved to another triggerer, or its task cleared) would see it poll on until its deadline.
    """
    task = asyncio.current_task()
    if sys.version_info < (3, 12) and task is not None and getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError


async def _read(
    shared: SharedClient,
    method: str,
    url: str,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
) -> tuple[httpx.Response, bytes]:
    """One async attempt, once a slot of the shared client is free: the answer and its decoded body,
    streamed through ``BoundedDecoder``.

    httpx would inflate each network chunk whole (a 64 kB chunk of a gzip bomb is 64 MB), so the
    raw bytes are decoded here, a bounded slice at a time.
    """
    async with (
        _slot(shared.slots),
        shared.client.stream(method, url, params=params, headers=headers) as response,
    ):
        decoder = BoundedDecoder(response.headers.get("Content-Encoding"), response.status_code)
        async for chunk in response.aiter_raw():
            decoder.feed(chunk)
    return response, decoder.body()
