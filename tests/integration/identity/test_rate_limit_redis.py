"""Shared rate limits against a real Redis server: processes (two limiters here) draw from one
bucket per key, atomically under concurrency, and a Redis outage falls back to the in-process
bucket instead of failing requests."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.identity.ratelimit import RedisLimiter

if TYPE_CHECKING:
    from support.tools_redis import RedisServer

pytestmark = pytest.mark.integration
# So slow that no token comes back during a test, whatever the machine's speed.
TRICKLE_PER_S = 0.0001
# Generous: a loaded machine must not turn a slow answer into the fallback these tests do not test.
TIMEOUT_S = 10.0


async def test_two_processes_share_one_bucket_per_key(redis_server_process: RedisServer) -> None:
    a, b = RedisLimiter(redis_server_process.url, TIMEOUT_S), RedisLimiter(redis_server_process.url, TIMEOUT_S)
    key = f"key_{uuid.uuid4().hex}"
    try:
        results = [await (a if n % 2 else b).take(key, TRICKLE_PER_S, 4) for n in range(8)]
        assert [r.allowed for r in results] == [True] * 4 + [False] * 4
        assert [r.remaining for r in results[:4]] == [3, 2, 1, 0]
        assert results[-1].retry_after_s > 0 and results[-1].limit == 4
        assert (await a.take(f"key_{uuid.uuid4().hex}", TRICKLE_PER_S, 4)).allowed  # another key, its own bucket
    finally:
        await a.close()
        await b.close()


async def test_concurrent_requests_cannot_take_more_than_the_bucket_holds(redis_server_process: RedisServer) -> None:
    limiters = [RedisLimiter(redis_server_process.url, TIMEOUT_S) for _ in range(4)]
    key = f"key_{uuid.uuid4().hex}"
    try:
        results = await asyncio.gather(*(limiters[n % 4].take(key, TRICKLE_PER_S, 10) for n in range(60)))
        assert sum(r.allowed for r in results) == 10
        assert sorted(r.remaining for r in results if r.allowed) == list(range(10))
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_tokens_return_at_the_configured_rate(redis_server_process: RedisServer) -> None:
    limiter = RedisLimiter(redis_server_process.url, TIMEOUT_S)
    key = f"key_{uuid.uuid4().hex}"
    try:
        assert (await limiter.take(key, 1000.0, 1)).allowed
        # At 1000 tokens/s the next one is back within milliseconds: wait on the state.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (await limiter.take(key, 1000.0, 1)).allowed:
            assert loop.time() < deadline, "no token came back"
    finally:
        await limiter.close()


async def test_a_redis_outage_falls_back_to_the_process_bucket() -> None:
    from kassa.store.embedded import free_port

    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        results = [await limiter.take("key_down", TRICKLE_PER_S, 2) for _ in range(3)]
        assert [r.allowed for r in results] == [True, True, False]
    finally:
        await limiter.close()
