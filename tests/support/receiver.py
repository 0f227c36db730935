"""A scripted HTTP/1.1 webhook receiver on a loopback port, for integration and e2e tests, and
the `receiver` fixture (a pytest plugin of tests/conftest.py) that runs one for a test."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    target: str = ""  # the request target: path and query string


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on a free port: answers with the scripted statuses in turn
    (the last one repeats) and records every request it got."""

    statuses: list[int] = field(default_factory=lambda: [200])
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            index = len(self.requests)
            target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else ""
            self.requests.append(Received(headers, body, target))
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.statuses[min(index, len(self.statuses) - 1)]
            reply = b"ok" if status < 300 else b"nope"
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(reply)}\r\nConnection: close\r\n{extra}\r\n".encode()
                + reply
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@asynccontextmanager
async def serving(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """`receiver` (a new one by default) listening on a free loopback port until the block ends."""
    found = receiver or Receiver()
    server = await asyncio.start_server(found.serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as found:
        yield found
