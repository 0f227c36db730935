"""Pool helpers shared by the event modules."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg

    from kassa.store.pool import Pool


@asynccontextmanager
async def connection(pool: Pool) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A pooled connection typed as a Connection: the pool's proxy forwards every Connection
    method at runtime, but the stubs type it as an unrelated class."""
    async with pool.acquire() as proxy:
        yield cast("asyncpg.Connection[Any]", proxy)
