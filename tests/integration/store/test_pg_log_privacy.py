"""The embedded PostgreSQL logs failing statements without the row, the statement or its
parameters: a constraint violation with a secret in the row leaves only its message."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


async def test_failing_inserts_leave_no_row_contents_or_statements_in_the_server_log(
    pg_server: EmbeddedPostgres, pg_url: str
) -> None:
    log = pg_server.root / "postgres.log"
    start = log.stat().st_size
    marker = "whsec_" + uuid.uuid4().hex  # stands for a secret in a row that fails a constraint
    conn = await asyncpg.connect(pg_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", "bad id", marker)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'x')", marker[:60])
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'x')", marker[:60])
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await conn.execute(f"SELECT '{marker}' FROM")
    finally:
        await conn.close()
    async with asyncio.timeout(10):
        while "duplicate key value" not in log.read_text(errors="replace")[start:]:
            await asyncio.sleep(0.05)
    written = log.read_text(errors="replace")[start:]
    assert 'violates check constraint "tenants_id_check"' in written  # errors are still logged
    assert marker not in written and marker[:60] not in written
    assert "Failing row contains" not in written and "STATEMENT:" not in written and "DETAIL:" not in written
