"""Delivery connects only to vetted addresses: an httpx transport whose connections are opened
by `VettingBackend` (the vetting itself is in `resolver.py`).

httpx has no resolver hook, but its connection pool (httpcore) takes a network backend;
`VettingBackend.connect_tcp` receives the URL's host, resolves it once, refuses the whole target
if any address is refused, and opens the TCP connection to the vetted IP itself. Nothing
resolves the name a second time, so a DNS answer that changes between check and connect (DNS
rebinding) cannot redirect the request. The request still carries the URL's host in its Host
header, and TLS still sends it as SNI and verifies the certificate against it, because httpcore
starts TLS with the origin's host name whatever address the backend connected to.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from kassa.notifications.adapters.resolver import system_resolve, vetted_addresses

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    from kassa.notifications.adapters.resolver import Resolver

__all__ = ["VettingBackend", "VettingTransport"]


class VettingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to vetted addresses (see the module doc)."""

    def __init__(self, allow_private: bool, resolve: Resolver = system_resolve) -> None:
        self.allow_private = allow_private
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await vetted_addresses(host, port, self.resolve, self.allow_private)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next vetted address, as a resolver-driven client would
        assert failure is not None  # addresses is never empty
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent over a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VettingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request conversion, exception mapping) over a connection pool
    whose network backend is a VettingBackend. httpx exposes no parameter for the backend, so
    the pool is built here; a test checks that every connection really goes through it."""

    def __init__(
        self,
        allow_private: bool,
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingBackend(allow_private, resolve),
        )
