"""A small HTTP/1.1 keep-alive load generator for loopback benchmarks.

Raw asyncio streams on uvloop: far cheaper per request than an HTTP client library, so more of
the two cores is left to the server under test. Bounded in time and in request count.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _client(
    host: str,
    port: int,
    path: str,
    headers: str,
    make_body: Callable[[random.Random], bytes],
    deadline: float,
    requests_max: int,
    result: LoadResult,
    seed: int,
    idempotency: bool,
) -> None:
    rng = random.Random(seed)
    # A unique Idempotency-Key per request, as real clients send: a per-connection prefix from
    # the OS's randomness (the body generator's seed repeats across phases and runs) and a counter.
    prefix = f"{os.urandom(8).hex()}-{seed}"
    count = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and result.sent < requests_max:
            body = make_body(rng)
            key = ""
            if idempotency:
                count += 1
                key = f"Idempotency-Key: {prefix}-{count}\r\n"
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{key}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            result.sent += 1
            started = time.perf_counter()
            writer.write(request)
            status, _ = await _read_response(reader)
            result.latencies_s.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    path: str,
    api_key: str,
    make_body: Callable[[random.Random], bytes],
    clients: int,
    duration_s: float,
    requests_max: int = 10_000_000,
    *,
    idempotency: bool = False,
) -> LoadResult:
    result = LoadResult()
    headers = f"Authorization: Bearer {api_key}\r\n"
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(
        *(
            _client(host, port, path, headers, make_body, deadline, requests_max, result, i, idempotency)
            for i in range(clients)
        )
    )
    result.elapsed_s = time.perf_counter() - started
    return result
