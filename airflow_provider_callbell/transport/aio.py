"""The async transport, over ``httpx``: a client for one event loop, and the one async send.

Triggers poll from the triggerer's event loop, where a blocking call would stall every deferred
task. :func:`send` runs the whole attempt under ``asyncio.wait_for`` with the connect timeout plus
the read timeout, reads the raw stream through
:class:`~airflow_provider_callbell.transport.caps.BoundedDecoder` and maps every failure to the same
typed errors as the sync send. It does not retry: a trigger polls again at its own pace and decides
with :attr:`~airflow_provider_callbell.exceptions.CallbellAPIError.is_transient`.

``httpx`` is imported on first use only: a worker that never defers never pays for it.
"""

from __future__ import annotations

import asyncio
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
    from collections.abc import Mapping

    import httpx

    from airflow_provider_callbell.connection import CallbellSettings
    from airflow_provider_callbell.transport.protocol import TransportLog


async def new_client(settings: CallbellSettings) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``settings``, to be used on the running event loop only.

    Its TLS context is the process's one (:func:`~airflow_provider_callbell.transport.tls.ssl_context`),
    built off the event loop.
    """
    import httpx

    connect, read = settings.timeout
    return httpx.AsyncClient(
        headers=protocol.headers(settings.token),
        timeout=httpx.Timeout(read, connect=connect),
        follow_redirects=False,  # a redirect must not carry the token elsewhere
        verify=await ssl_context(),
    )


async def send(
    client: httpx.AsyncClient,
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
            _read(client, method, settings.base_url + path, params), timeout=settings.budget
        )
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


async def _read(
    client: httpx.AsyncClient, method: str, url: str, params: Mapping[str, Any] | None
) -> tuple[httpx.Response, bytes]:
    """One async attempt: the answer and its decoded body, streamed through ``BoundedDecoder``.

    httpx would inflate each network chunk whole (a 64 kB chunk of a gzip bomb is 64 MB), so the
    raw bytes are decoded here, a bounded slice at a time.
    """
    async with client.stream(method, url, params=params) as response:
        decoder = BoundedDecoder(response.headers.get("Content-Encoding"), response.status_code)
        async for chunk in response.aiter_raw():
            decoder.feed(chunk)
    return response, decoder.body()
