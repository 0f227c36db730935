"""PostgreSQL and HTTP adapters of the notifications context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

# A connection either owned directly or borrowed from a pool; the queries work on both.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
