"""The entitlement check's cache: the hottest read of a live event served from memory.

What is cached per (tenant, customer, content) is the entitlement row that decides the check
(or its absence), never the answer: the answer depends on the time and is computed at each
check from the row (`domain.entitlements.check`), so a window that opens or ends needs no
invalidation. Only writes change the row, and every write invalidates its key:
- in this process at once, after the write committed and before the request is answered;
- in the other processes through PostgreSQL LISTEN/NOTIFY (`ENTITLEMENT_CHANNEL`, sent inside
  the writing transaction so it is delivered exactly when the write commits);
- as a bound on anything missed (a listener reconnecting), entries live at most
  `entitlement_cache_ttl_s`.

A read that raced a write must not put the older row back after the write invalidated it: each
key has a generation, bumped by every invalidation, and a read stores its row only if the
generation it saw before reading the database is still current.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg

from kassa.payments.adapters.ppv_rows import ENTITLEMENT_CHANNEL
from kassa.shared.limits import entitlement_cache_entries_max, entitlement_cache_ttl_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.payments.domain.entitlements import Entitlement

log = logging.getLogger("kassa.payments")


class Cache(Protocol):
    """What the service needs of an entitlement cache (in process, or shared through Redis)."""

    hits: int
    misses: int

    async def fetch(self, key: str, load: Callable[[], Awaitable[Entitlement | None]]) -> Entitlement | None: ...

    async def forget(self, key: str) -> None: ...

    async def listen(self, database_url: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    entitlement: Entitlement | None
    stored_at: float


class EntitlementCache:
    """A bounded LRU of decisive entitlement rows, keyed by `cache_key(...)`."""

    def __init__(self, entries_max: int = entitlement_cache_entries_max, ttl_s: float = entitlement_cache_ttl_s):
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._entries_max = entries_max
        self._ttl_s = ttl_s
        self._listener: asyncpg.Connection | None = None
        self.hits = 0
        self.misses = 0

    async def fetch(self, key: str, load: Callable[[], Awaitable[Entitlement | None]]) -> Entitlement | None:
        """The deciding row of `key`: from the cache, or loaded (and then cached)."""
        found, entitlement = self.get(key)
        if found:
            return entitlement
        generation = self.generation(key)
        entitlement = await load()
        self.put(key, generation, entitlement)
        return entitlement

    async def forget(self, key: str) -> None:
        """After a write that changed `key` committed: drop it here (the other processes learn it
        from the NOTIFY the write sent)."""
        self.invalidate(key)

    def get(self, key: str) -> tuple[bool, Entitlement | None]:
        """(found, row): found is False when the database must be asked."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.stored_at > self._ttl_s:
            self.misses += 1
            return False, None
        self._entries.move_to_end(key)
        self.hits += 1
        return True, entry.entitlement

    def generation(self, key: str) -> int:
        return self._generations.get(key, 0)

    def put(self, key: str, generation: int, entitlement: Entitlement | None) -> None:
        """Store a row read after `generation` was seen, unless a write invalidated it since."""
        if self._generations.get(key, 0) != generation:
            return
        self._entries[key] = _Entry(entitlement, time.monotonic())
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            oldest, _ = self._entries.popitem(last=False)
            self._generations.pop(oldest, None)

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)
        # Bumped even without an entry: a read in flight must not store what it read before.
        self._generations[key] = self._generations.get(key, 0) + 1
        if len(self._generations) > 2 * self._entries_max:
            self._generations.clear()  # entries stay: only a read in flight may then store once
            self._entries.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._generations.clear()

    async def listen(self, database_url: str) -> None:
        """Follow invalidations from other processes; a lost connection empties the cache
        (what was missed is unknown) and is reopened by the next `listen` call."""
        self._listener = await asyncpg.connect(database_url)
        self._listener.add_termination_listener(lambda _conn: self.clear())
        await self._listener.add_listener(ENTITLEMENT_CHANNEL, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.invalidate(str(payload))

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self._listener.close()
            self._listener = None
