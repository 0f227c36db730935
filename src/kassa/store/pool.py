"""The asyncpg connection pool, created by bootstrap (never at import time)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import msgspec

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from kassa.shared.limits import db_pool_size_max, db_statement_timeout_ms

Pool = asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb travels as text on the wire; msgspec encodes fast, json.loads keeps plain dicts.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: msgspec.json.encode(v).decode(),
        decoder=json.loads,
        schema="pg_catalog",
        format="text",
    )


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Pool reset that skips asyncpg's RESET ALL / unlock-all round trip. Only for pools whose
    users never change session state (no SET, LISTEN or session advisory locks): the API's.
    An open transaction is still rolled back by asyncpg before this runs."""


async def create_pool(dsn: str, size_max: int = db_pool_size_max, *, reset_session: bool = True) -> Pool:
    pool = await asyncpg.create_pool(
        dsn,
        # No connection is opened up front: a process (re)started while the database is down
        # comes up, answers 503 and reports not ready, instead of failing to start and being
        # restarted in a loop; connections are opened on first use and then kept.
        min_size=0,
        max_size=size_max,
        init=_init_connection,
        reset=None if reset_session else _keep_session,
        server_settings={
            "statement_timeout": str(db_statement_timeout_ms),
            "application_name": "kassa",
        },
    )
    assert pool is not None  # asyncpg types the result as Optional for the no-await form
    return pool


# What our SQL functions accept: a plain connection or one borrowed from the pool. A string
# alias: asyncpg's classes are generic only in its type stubs, not at run time.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
