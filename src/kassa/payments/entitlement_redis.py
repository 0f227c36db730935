"""The entitlement check's cache shared by every process through Redis/Valkey (`KASSA_REDIS_URL`).

The same contract as the in-process cache (`entitlement_cache.py`): what is cached per key is the
deciding entitlement row (or its absence), the answer is computed at each check. The difference
is where invalidation lands: a write that committed deletes the key in Redis before its response
is sent, so every process, not only the writer, answers from the new row at once.

A read that raced a write must not put the older row back: each key has a generation counter
that every invalidation increments; a read fetches the row and the generation together, and
stores what it loaded from the database only if the generation is still the one it saw (a Lua
script makes the compare-and-set atomic). Entries expire after `entitlement_cache_ttl_s`.

Redis is an accelerator, never a dependency: when it is slow or down the check reads the
database (and the failure is logged), so an outage costs latency, not answers. An invalidation
that fails leaves the key at most `entitlement_cache_ttl_s` stale.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from kassa.payments.domain.entitlements import Entitlement
from kassa.shared.limits import entitlement_cache_redis_timeout_s, entitlement_cache_ttl_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger("kassa.payments")

_PREFIX = "kassa:entitlement:"
_GENERATION_PREFIX = "kassa:entitlement-gen:"
# Set the row only if the key's generation is still the one the reader saw.
_STORE_IF_CURRENT = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
"""
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Entitlement | None)
# A generation outlives every entry that could have been read under it.
_GENERATION_TTL_FACTOR = 10


class RedisEntitlementCache:
    def __init__(
        self, url: str, ttl_s: float = entitlement_cache_ttl_s, timeout_s: float = entitlement_cache_redis_timeout_s
    ) -> None:
        from redis import asyncio as aioredis

        self._client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._store = self._client.register_script(_STORE_IF_CURRENT)
        self._ttl_ms = int(ttl_s * 1000)
        self.hits = 0
        self.misses = 0

    async def fetch(self, key: str, load: Callable[[], Awaitable[Entitlement | None]]) -> Entitlement | None:
        from redis.exceptions import RedisError

        entry, generation = _PREFIX + key, _GENERATION_PREFIX + key
        try:
            value, seen = await self._client.mget([entry, generation])
        except (RedisError, OSError) as exc:
            log.warning("entitlement cache unavailable, reading the database: %s", type(exc).__name__)
            return await load()
        if value is not None:
            self.hits += 1
            cached: Entitlement | None = _decoder.decode(value)
            return cached
        self.misses += 1
        entitlement = await load()
        try:
            await self._store(keys=[entry, generation], args=[seen or b"0", _encoder.encode(entitlement), self._ttl_ms])
        except (RedisError, OSError) as exc:
            log.warning("entitlement cache store failed: %s", type(exc).__name__)
        return entitlement

    async def forget(self, key: str) -> None:
        from redis.exceptions import RedisError

        generation = _GENERATION_PREFIX + key
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(generation)
                pipe.pexpire(generation, self._ttl_ms * _GENERATION_TTL_FACTOR)
                pipe.delete(_PREFIX + key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("entitlement cache invalidation failed (stale for at most the TTL): %s", type(exc).__name__)

    def seen(self, key: str) -> int:
        return 0  # the generation lives in Redis; `written` only invalidates

    async def written(self, key: str, seen: int, entitlement: Entitlement) -> None:
        """Invalidate: storing the row would need the generation read before the write (one
        more Redis round trip per purchase) to stay ordered with a later write's invalidation."""
        await self.forget(key)

    def index_buyers(self, load: Callable[[str, str, int], Awaitable[list[str]]]) -> None:
        """Not used: the index follows notifications, which this shared cache does not listen to."""

    async def listen(self, database_url: str) -> None:
        """Nothing to follow: every process reads the one shared cache."""

    async def close(self) -> None:
        await self._client.aclose()
