"""Who has bought a content: lets the in-process entitlement cache answer "no entitlement" for a
customer it has never seen without reading the database.

During a live event most checks that miss the cache are for customers who have not bought (yet):
each of them would cost a read. For a content with at most `ppv_buyers_index_max` buyers, the
process keeps the set of customers with any entitlement for it (every entitlement comes from a
purchase, so the buyers of the content) and answers a customer outside the set from the set.

The set stays exact the way the cache does, through the writes' notifications:
- it is recorded from before it is read: every notification about (tenant, content) received
  from the moment the index entry exists adds its customer, and a purchase committed before the
  read's snapshot is in what the read returns; so no purchase can fall between the two;
- any notification for a customer adds it (a purchase's carries the row; a plain key means the
  customer has some row to read);
- it is only used while the cache's LISTEN connection is up (the cache drops the index
  whenever it drops its entries), and it is read again after `entitlement_cache_ttl_s`, which
  bounds what a writer that does not notify could hide, as for the cached rows;
- a content with more buyers than the bound is not indexed (its misses read the database), and
  is looked at again only after `_TOO_MANY_LATER` TTLs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from kassa.shared.limits import entitlement_cache_ttl_s, ppv_buyers_index_contents_max, ppv_buyers_index_max

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger("kassa.payments")
# A content found with more buyers than the bound is read again only after this many TTLs.
_TOO_MANY_LATER = 20


@dataclass(slots=True)
class _Buyers:
    started_at: float  # when recording started, before the read
    customers: set[str] = field(default_factory=set)
    complete: bool = False  # read and within the bound
    fits: bool = True  # False once found above the bound: read again only much later


def split_key(key: str) -> tuple[str, str, str]:
    """(tenant, customer, content) of a cache key (ids contain no '|')."""
    tenant, customer, content = key.split("|")
    return tenant, customer, content


class BuyersIndex:
    def __init__(
        self,
        buyers_max: int = ppv_buyers_index_max,
        contents_max: int = ppv_buyers_index_contents_max,
        ttl_s: float = entitlement_cache_ttl_s,
    ) -> None:
        self._buyers_max = buyers_max
        self._contents_max = contents_max
        self._ttl_s = ttl_s
        self._index: dict[tuple[str, str], _Buyers] = {}
        self._load: Callable[[str, str, int], Awaitable[list[str]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.loads = 0  # reads of a content's buyers (tests watch it)

    def attach(self, load: Callable[[str, str, int], Awaitable[list[str]]]) -> None:
        """`load(tenant, content, at_most)`: the content's buyers, at most that many."""
        self._load = load

    def lacks(self, key: str) -> bool:
        """True when the customer of `key` certainly has no entitlement for its content. False
        means "ask the database"; it also starts (re)reading the content's buyers if needed."""
        if self._load is None:
            return False
        tenant, customer, content = split_key(key)
        entry = self._index.get((tenant, content))
        if entry is None or time.monotonic() - entry.started_at > self._ttl_s * (1 if entry.fits else _TOO_MANY_LATER):
            self._start(tenant, content)
            return False
        return entry.complete and customer not in entry.customers

    def known(self, tenant: str, content: str) -> bool:
        """Whether the content's buyers are read and usable (tests wait on it)."""
        entry = self._index.get((tenant, content))
        return entry is not None and entry.complete

    def noticed(self, key: str) -> None:
        """A write about `key` committed (a notification arrived)."""
        tenant, customer, content = split_key(key)
        entry = self._index.get((tenant, content))
        if entry is not None:
            entry.customers.add(customer)
            if len(entry.customers) > self._buyers_max:
                entry.complete, entry.fits = False, False  # too many to keep: misses read the database

    def clear(self) -> None:
        self._index.clear()  # a read in flight finds its entry gone and drops what it read

    def _start(self, tenant: str, content: str) -> None:
        if len(self._index) >= self._contents_max and (tenant, content) not in self._index:
            return
        entry = _Buyers(time.monotonic())
        self._index[(tenant, content)] = entry
        task = asyncio.get_running_loop().create_task(self._read(tenant, content, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, tenant: str, content: str, entry: _Buyers) -> None:
        assert self._load is not None  # _start is only reached with a loader
        self.loads += 1
        try:
            found = await self._load(tenant, content, self._buyers_max + 1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("buyers of a content could not be read (%s); misses read the database", type(exc).__name__)
            if self._index.get((tenant, content)) is entry:
                del self._index[(tenant, content)]
            return
        if self._index.get((tenant, content)) is not entry:
            return  # cleared (listener lost) or replaced while reading
        entry.customers.update(found)
        entry.fits = len(found) <= self._buyers_max and len(entry.customers) <= self._buyers_max
        entry.complete = entry.fits
        if not entry.fits:
            entry.customers.clear()

    async def idle(self) -> None:
        """Until no read is in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
