"""Which certificates both transports trust, and the async transport's TLS context, built off the loop.

The sync transport trusts the CA bundle the environment names for ``requests``; the async transport
(httpx) would read only ``SSL_CERT_FILE``, so it is given a context built from the same bundle, so
that a deferred sensor in the triggerer reaches a host behind a company CA as a send from a worker
does. Building a context reads the bundle from disk, so it is built once per process, in a worker
thread: 500 deferred triggers starting at once must not stall the triggerer's event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

_SSL_CONTEXT: list[ssl.SSLContext] = []
_SSL_CONTEXT_LOCK = threading.Lock()


def ca_bundle() -> str | None:
    """The CA bundle the environment names for ``requests`` (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def default_ssl_context() -> ssl.SSLContext:
    """The process's one TLS context for httpx, trusting :func:`ca_bundle` when one is named."""
    with _SSL_CONTEXT_LOCK:  # 500 triggers starting at once build it once
        if not _SSL_CONTEXT:
            import ssl

            import httpx

            bundle = ca_bundle()
            if bundle is None:
                _SSL_CONTEXT.append(httpx.create_ssl_context())
            elif os.path.isdir(bundle):
                _SSL_CONTEXT.append(ssl.create_default_context(capath=bundle))
            else:
                _SSL_CONTEXT.append(ssl.create_default_context(cafile=bundle))
    return _SSL_CONTEXT[0]


async def ssl_context() -> ssl.SSLContext:
    """:func:`default_ssl_context` for async code: built once per process in a worker thread."""
    return _SSL_CONTEXT[0] if _SSL_CONTEXT else await asyncio.to_thread(default_ssl_context)
