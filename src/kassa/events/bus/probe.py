"""A cheap reachability check of the configured broker, for /readyz.

It opens a TCP connection to each configured server and, for NATS, reads the server's INFO
line (sent before authentication, so no credentials are needed to tell "up" from "down").
One reachable server is enough: clients fail over among them by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from kassa.shared.limits import readiness_probe_timeout_s


def _nats_servers(urls: str) -> list[tuple[str, int]]:
    servers = []
    for raw in urls.split(","):
        parts = urlsplit(raw.strip() if "://" in raw else f"nats://{raw.strip()}")
        if parts.hostname:
            servers.append((parts.hostname, parts.port or 4222))
    return servers


def _kafka_servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for raw in bootstrap.split(","):
        host, _, port = raw.strip().rpartition(":")
        if host and port.isdigit():
            servers.append((host.strip("[]"), int(port)))
    return servers


async def _reachable(host: str, port: int, expect: bytes) -> bool:
    try:
        async with asyncio.timeout(readiness_probe_timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                return not expect or (await reader.read(len(expect))).startswith(expect)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False


async def probe(nats_url: str | None, kafka_bootstrap: str | None) -> str:
    """'ok', 'unreachable', or 'not_configured' (no broker settings to check)."""
    if kafka_bootstrap:
        servers, expect = _kafka_servers(kafka_bootstrap), b""
    elif nats_url:
        servers, expect = _nats_servers(nats_url), b"INFO"
    else:
        return "not_configured"
    for host, port in servers:
        if await _reachable(host, port, expect):
            return "ok"
    return "unreachable"
