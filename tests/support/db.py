"""Fixtures: a throwaway embedded PostgreSQL on a free port, migrated once per test session."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kassa.store.embedded import EmbeddedPostgres
from kassa.store.migrate import migrate
from kassa.store.pool import Pool, create_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


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
    asyncio.run(migrate(pg_server.url))
    return pg_server.url


@pytest.fixture(scope="session")
async def pool(pg_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(pg_url)
    try:
        yield pool
    finally:
        await pool.close()


def pytest_configure(config: Any) -> None:
    os.environ.setdefault("KASSA_LOG_LEVEL", "WARNING")
