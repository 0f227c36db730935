"""The entitlement check's cache: the hottest read of a live event served from memory.

What is cached per (tenant, customer, content) is the entitlement row that decides the check
(or its absence), never the answer: the answer depends on the time and is computed at each
check from the row (`domain.entitlements.check`), so a window that opens or ends needs no
invalidation. Only writes change the row, and every write invalidates its key:
- in this process at once, after the write committed and before the request is answered;
- in the other processes through PostgreSQL LISTEN/NOTIFY (`ENTITLEMENT_CHANNEL`, sent inside
  the writing transaction so it is delivered exactly when the write commits);
- a purchase, the write of a live event, does not make the next check miss: the buying process
  stores the row it wrote (`written`), and its notification carries that row to the others;
- a customer never seen is answered "no entitlement" from the content's buyers when this
  process keeps them (`entitlement_buyers.py`, only while listening).
- as a bound on anything missed (a listener reconnecting), entries live at most
  `entitlement_cache_ttl_s`.

A read that raced a write must not put the older row back after the write invalidated it: each
key has a generation, bumped by every invalidation, and a read stores its row only if the
generation it saw before reading the database is still current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg
import msgspec

from kassa.payments.adapters.ppv_rows import ENTITLEMENT_CHANNEL, read_notice
from kassa.payments.entitlement_buyers import BuyersIndex
from kassa.shared.limits import entitlement_cache_entries_max, entitlement_cache_ttl_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.payments.domain.entitlements import Entitlement

log = logging.getLogger("kassa.payments")
_PING_S = 5.0  # the LISTEN connection is pinged this often (and must answer within it)
_RETRY_S_MIN = 0.1
_RETRY_S_MAX = 5.0  # reconnect backoff cap while the database is away


class Cache(Protocol):
    """What the service needs of an entitlement cache (in process, or shared through Redis)."""

    hits: int
    misses: int

    async def fetch(self, key: str, load: Callable[[], Awaitable[Entitlement | None]]) -> Entitlement | None: ...

    async def forget(self, key: str) -> None: ...

    def seen(self, key: str) -> int:
        """A token taken before a write, handed back to `written` after it committed."""
        ...

    async def written(self, key: str, seen: int, entitlement: Entitlement) -> None:
        """After a write that made `entitlement` the deciding row of `key` committed."""
        ...

    def index_buyers(self, load: Callable[[str, str, int], Awaitable[list[str]]]) -> None:
        """Give the cache a reader of a content's buyers (`entitlement_buyers`), if it can use one."""
        ...

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
        self._task: asyncio.Task[None] | None = None
        # Only while LISTEN is up may rows be served from or stored in the cache. A cache made
        # without `listen` (one process, tests) follows its own writes only and is always usable.
        self._listening = True
        self.buyers = BuyersIndex(ttl_s=ttl_s)
        self.hits = 0
        self.misses = 0

    def index_buyers(self, load: Callable[[str, str, int], Awaitable[list[str]]]) -> None:
        self.buyers.attach(load)

    @property
    def following(self) -> bool:
        """Whether the other processes' writes reach this cache now (LISTEN is up)."""
        return self._task is not None and self._listening

    async def fetch(self, key: str, load: Callable[[], Awaitable[Entitlement | None]]) -> Entitlement | None:
        """The deciding row of `key`: from the cache, or loaded (and then cached)."""
        found, entitlement = self.get(key)
        if found:
            return entitlement
        generation = self.generation(key)
        # A customer outside a content's known buyers has no entitlement. Only while following
        # the other processes: a cache that does not listen knows only its own purchases.
        if self.following and self.buyers.lacks(key):
            entitlement = None
        else:
            entitlement = await load()
        self.put(key, generation, entitlement)
        return entitlement

    async def forget(self, key: str) -> None:
        """After a write that changed `key` committed: drop it here (the other processes learn it
        from the NOTIFY the write sent)."""
        self.invalidate(key)

    def seen(self, key: str) -> int:
        return self.generation(key)

    async def written(self, key: str, seen: int, entitlement: Entitlement) -> None:
        """Serve the row this process just wrote without reading it back. If the key changed
        since `seen`, a notification arrived meanwhile (often this write's own, which carries
        the row): the notifications, in commit order, then keep the key current, and a cache
        that follows none reads the key again."""
        if self.generation(key) != seen:
            if self._task is None:
                self.invalidate(key)
            return
        self.invalidate(key)
        self.put(key, self.generation(key), entitlement)

    def get(self, key: str) -> tuple[bool, Entitlement | None]:
        """(found, row): found is False when the database must be asked."""
        entry = self._entries.get(key) if self._listening else None
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
        if not self._listening or self._generations.get(key, 0) != generation:
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
        self.buyers.clear()

    async def listen(self, database_url: str) -> None:
        """Follow invalidations from other processes, in the background: the process starts even
        while the database is down (a worker respawned during an outage must not fail its
        startup). Until the LISTEN connection is up, and whenever it is lost, nothing is served
        from or stored in the cache: what another process wrote meanwhile is unknown."""
        self._listening = False
        self._task = asyncio.create_task(self._follow(database_url), name="entitlement-cache-listener")

    async def _follow(self, database_url: str) -> None:
        delay_s = _RETRY_S_MIN
        while True:
            try:
                conn = await asyncpg.connect(database_url)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("entitlement cache listener cannot connect (%s); cache bypassed", type(exc).__name__)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_S_MAX)
                continue
            self._listener = conn
            try:
                await conn.add_listener(ENTITLEMENT_CHANNEL, self._on_notify)
                self.clear()
                self._listening, delay_s = True, _RETRY_S_MIN
                while True:  # a ping notices a silently dead connection
                    await asyncio.sleep(_PING_S)
                    await conn.fetchval("SELECT 1", timeout=_PING_S)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("entitlement cache listener lost (%s); cache bypassed", type(exc).__name__)
            finally:
                self._listening = False
                self.clear()
                self._listener = None
                with contextlib.suppress(Exception):
                    conn.terminate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """Notifications arrive in commit order: one carrying the key's new row stores it (a
        later write's notification then replaces or drops it), a plain key drops the entry."""
        try:
            key, entitlement = read_notice(str(payload))
        except msgspec.DecodeError:
            log.warning("unreadable entitlement notification; cache cleared")
            self.clear()
            return
        self.buyers.noticed(key)
        self.invalidate(key)
        if entitlement is not None:
            self.put(key, self.generation(key), entitlement)

    async def close(self) -> None:
        await self.buyers.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
