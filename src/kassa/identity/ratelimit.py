"""Rate limits per API key: a token bucket per key, in process or shared through Redis/Valkey.

In process (the default) each API process keeps its own buckets: with N processes a key may
make up to N times its limit (documented). With `KASSA_REDIS_URL` set, every process takes its
tokens from one bucket per key in Redis, through one Lua script (atomic on the server, and timed
by the server's clock so the processes' clocks do not matter). If Redis does not answer within
`rate_limit_redis_timeout_s`, the request is limited by the in-process bucket instead and the
outage is logged (throttled): a cache outage must not take the API down, and the in-process
limit still stops a runaway client.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from kassa.identity.domain.ratelimit import Decision, decision, refill, take
from kassa.shared.limits import (
    rate_limit_buckets_max,
    rate_limit_burst_default,
    rate_limit_per_s_default,
    rate_limit_redis_timeout_s,
)

if TYPE_CHECKING:
    from kassa.identity.domain.model import Principal

log = logging.getLogger("kassa.identity")


class Limiter(Protocol):
    async def take(self, key_id: str, rate_per_s: float, burst: int) -> Decision: ...

    async def close(self) -> None: ...


class InProcessLimiter:
    """Buckets in a bounded LRU dict; a dropped bucket comes back full (a forgotten key is
    one that has not been used for a long time)."""

    def __init__(self, size_max: int = rate_limit_buckets_max) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._size_max = size_max

    async def take(self, key_id: str, rate_per_s: float, burst: int) -> Decision:
        return self.take_now(key_id, rate_per_s, burst, time.monotonic())

    def take_now(self, key_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        state = self._buckets.get(key_id)
        tokens = float(burst) if state is None else refill(state[0], state[1], now, rate_per_s, burst)
        left, result = take(tokens, rate_per_s, burst)
        self._buckets[key_id] = (left, now)
        self._buckets.move_to_end(key_id)
        if len(self._buckets) > self._size_max:
            self._buckets.popitem(last=False)
        return result

    async def close(self) -> None:
        return None


# KEYS[1] bucket; ARGV rate per second, burst. Returns {allowed, tokens left as a string} (Lua
# numbers become integers on the way out). The key expires once the bucket would be full anyway.
BUCKET_SCRIPT_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.6f', tokens)}
"""


class RedisLimiter:
    """One bucket per key in Redis (`kassa:ratelimit:<key id>`), shared by every process."""

    def __init__(self, url: str, timeout_s: float = rate_limit_redis_timeout_s) -> None:
        from redis import asyncio as aioredis

        self._client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._client.register_script(BUCKET_SCRIPT_LUA)
        self._fallback = InProcessLimiter()
        self._failing_since: float | None = None

    async def take(self, key_id: str, rate_per_s: float, burst: int) -> Decision:
        from redis.exceptions import RedisError

        try:
            allowed, left = await self._script(keys=[f"kassa:ratelimit:{key_id}"], args=[rate_per_s, burst])
        except (RedisError, OSError, TimeoutError) as exc:
            self._note_outage(exc)
            return await self._fallback.take(key_id, rate_per_s, burst)
        if self._failing_since is not None:
            log.warning("Redis answers again; rate limits are shared across processes again")
            self._failing_since = None
        return decision(bool(int(allowed)), float(left), rate_per_s, burst)

    def _note_outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._failing_since is None or now - self._failing_since > 60:
            log.warning("Redis unavailable; rate limits fall back to this process's buckets", extra={"error": str(exc)})
            self._failing_since = now

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


def limits_of(principal: Principal, default_per_s: int, default_burst: int) -> tuple[int, int]:
    """The key's own limit, or the named default."""
    rate = principal.rate_limit_per_s or default_per_s
    burst = principal.rate_limit_burst or (default_burst if principal.rate_limit_per_s is None else 2 * rate)
    return rate, burst


def build_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else InProcessLimiter()


__all__ = [
    "BUCKET_SCRIPT_LUA",
    "InProcessLimiter",
    "Limiter",
    "RedisLimiter",
    "build_limiter",
    "limits_of",
    "rate_limit_burst_default",
    "rate_limit_per_s_default",
]
