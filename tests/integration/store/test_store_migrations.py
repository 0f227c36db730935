"""Two `kassa migrate` processes racing on a fresh database apply each migration once; a rerun is a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.store.migrate import load_migrations

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration
KASSA = Path(sys.executable).parent / "kassa"


def migrate_process(url: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update({"KASSA_DATABASE_URL": url, "KASSA_DATA_DIR": str(data_dir)})
    return subprocess.Popen([str(KASSA), "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def applied_names(output: str) -> set[str]:
    line = next(x for x in output.splitlines() if x.startswith("applied: "))
    return set() if "nothing" in line else set(line.removeprefix("applied: ").split(", "))


async def test_two_processes_migrating_a_fresh_database_at_once_apply_each_migration_once(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = pg_server.url.rsplit("/", 1)[0] + f"/{name}"
        first, second = migrate_process(url, tmp_path), migrate_process(url, tmp_path)
        outputs = [p.communicate(timeout=120) for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], outputs
        applied = [applied_names(out) for out, _ in outputs]
        expected = {m.name for m in load_migrations()}
        assert applied[0] | applied[1] == expected
        assert applied[0] & applied[1] == set()

        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [r["name"] for r in rows] == sorted(expected)
            assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'entries'") == 1
        finally:
            await conn.close()

        again = migrate_process(url, tmp_path)
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert applied_names(out) == set() and "up to date" in out
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
