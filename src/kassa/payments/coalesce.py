"""Coalesced reads: the lookups of concurrent requests go to the database together.

While one read runs, the keys asked for meanwhile queue; when it ends, the queued keys (at
most `reads_max`) are read together by one call of `_read`. A crowd of purchases arriving at
once therefore costs a few reads, not one each. Each caller waits on its key's future behind
`asyncio.shield`: a caller giving up (its client gone) never cancels the read for the others.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, reads_max: int) -> None:
        self._reads_max = reads_max
        self._queue: dict[K, asyncio.Future[V]] = {}
        self._running = False

    async def _read(self, keys: list[K]) -> dict[K, V]:
        """The values of `keys`; a key missing from the answer gets `_missing()`."""
        raise NotImplementedError

    def _missing(self) -> V:
        raise KeyError

    async def get(self, key: K) -> V:
        future = self._queue.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._queue[key] = future
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = {k: self._queue.pop(k) for k in list(self._queue)[: self._reads_max]}
                try:
                    found = await self._read(list(batch))
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for key, future in batch.items():
                    if not future.done():
                        future.set_result(found[key] if key in found else self._missing())
        finally:
            self._running = False
