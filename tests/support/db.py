"""Fixtures: a throwaway embedded PostgreSQL on a free port, migrated once per test session.

The server authenticates every connection (SCRAM) and has kassa's roles provisioned. `pg_url`
and `pool` are the schema owner's (BYPASSRLS: tests set up and check rows of any tenant);
`app_url`/`app_pool` and `worker_url`/`worker_pool` are the roles the API and the workers run as.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from kassa.ledger import Batcher, LedgerService
from kassa.store import roles
from kassa.store.embedded import EmbeddedPostgres
from kassa.store.migrate import migrate, migrations_dir
from kassa.store.pool import Pool, create_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="kassa-test-pg-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    server = EmbeddedPostgres(root=root / "pg", fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server: EmbeddedPostgres) -> str:
    url = pg_server.role_url(roles.OWNER)
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="session")
def app_url(pg_server: EmbeddedPostgres, pg_url: str) -> str:
    return pg_server.role_url(roles.APP)


@pytest.fixture(scope="session")
def worker_url(pg_server: EmbeddedPostgres, pg_url: str) -> str:
    return pg_server.role_url(roles.WORKER)


@asynccontextmanager
async def _small_pool(url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(url, size_max=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def app_pool(app_url: str) -> AsyncIterator[Pool]:
    async with _small_pool(app_url) as pool:
        yield pool


@pytest.fixture(scope="session")
async def worker_pool(worker_url: str) -> AsyncIterator[Pool]:
    async with _small_pool(worker_url) as pool:
        yield pool


@pytest.fixture
async def ledger(app_pool: Pool) -> AsyncIterator[LedgerService]:
    """A ledger service with its own running batcher, on the application role as the API runs
    (row-level security and the sweeper's doors apply). A test module may define its own."""
    batcher = Batcher(app_pool)
    batcher.start()
    try:
        yield LedgerService(app_pool, batcher)
    finally:
        await batcher.stop()


@pytest.fixture(scope="session")
async def pool(pg_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(pg_url)
    try:
        yield pool
    finally:
        await pool.close()


async def _new_database(server: EmbeddedPostgres, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def database_migrated_before(server: EmbeddedPostgres, workdir: Path, version: int) -> str:
    """A new database of `server` with only the migrations numbered below `version` applied (what
    an older release left behind, for upgrade tests); its superuser URL."""
    before = workdir / f"migrations_before_{version:04d}"
    before.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) < version:
            shutil.copy(path, before / path.name)
    name = await _new_database(server, "up")
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url, before)
    return url


async def fresh_database(server: EmbeddedPostgres) -> str:
    """A new database of `server`, provisioned and migrated as a deployment's is; its name. The
    API and worker roles may force their statistics out at once (`pg_stat_force_next_flush`), so a
    test can read their scans without waiting for the periodic report."""
    name = await _new_database(server, "fresh")
    server.provision(name)
    await migrate(server.role_url(roles.OWNER, name))
    superuser = await asyncpg.connect(server.role_url(roles.SUPERUSER, name))
    try:
        await superuser.execute(f"GRANT EXECUTE ON FUNCTION pg_stat_force_next_flush() TO {roles.APP}, {roles.WORKER}")
    finally:
        await superuser.close()
    return name


async def young_and_big_tenants(owner: asyncpg.Connection[asyncpg.Record]) -> tuple[str, str]:
    """Two new tenants: a young one with the accounts `bank` and `alice` (USD, overdraft allowed),
    and a big one that a test may fill later; their ids."""
    young, big = f"young-{uuid.uuid4().hex[:8]}", f"big-{uuid.uuid4().hex[:8]}"
    await owner.execute("INSERT INTO tenants (id, name) VALUES ($1, 'young'), ($2, 'big')", young, big)
    await owner.execute(
        "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
        " VALUES ($1, 'bank', 'USD', 'credit', true), ($1, 'alice', 'USD', 'credit', true)",
        young,
    )
    return young, big


async def sequential_scans(conn: asyncpg.Connection[asyncpg.Record], tables: Sequence[str]) -> dict[str, int]:
    """Sequential scans of `tables` so far, as the statistics last reported them."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = await conn.fetch(
        "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY($1::text[])", list(tables)
    )
    return {r["relname"]: r["seq_scan"] for r in rows}


def pytest_configure(config: Any) -> None:
    os.environ.setdefault("KASSA_LOG_LEVEL", "WARNING")


async def wait_until_blocked_by(pool: Pool, blocker_pid: int, timeout_s: float = 10.0) -> None:
    """Wait until some backend waits for a lock held by the backend `blocker_pid` (proof that a
    concurrent statement is blocked, from PostgreSQL's lock table rather than from a sleep)."""
    async with asyncio.timeout(timeout_s):
        while not await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))", blocker_pid
        ):
            await asyncio.sleep(0.01)
