"""Append-only numbered migrations, each applied once, under a PostgreSQL advisory lock.

Two processes starting together both call `migrate()`: the second blocks on the advisory lock
until the first has committed, then finds every migration already recorded and does nothing.
Each migration runs in its own transaction together with its `schema_migrations` row. After
the migrations, still under the lock, `store.rls.secure_schema` gives every tenant table its
row-level security policy and the application roles their privileges (idempotent, every run).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from kassa.shared.invariants import invariant
from kassa.store.rls import secure_schema

# Arbitrary but fixed: the advisory lock key every kassa process uses for migrations.
MIGRATION_LOCK_KEY = 0x6B61737361  # "kassa"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")  # used with fullmatch


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    override = os.environ.get("KASSA_MIGRATIONS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        invariant(match is not None, f"migration file names are NNNN_name.sql: {path.name}")
        assert match is not None  # for mypy; invariant() above already guarantees it
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    invariant(len(versions) == len(set(versions)), "migration versions are unique")
    return found


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied by this call (empty when up to date)."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            done = {r["version"]: r for r in rows}
            for migration in load_migrations(directory):
                previous = done.get(migration.version)
                if previous is not None:
                    invariant(
                        previous["checksum"] == migration.checksum,
                        f"applied migration {migration.name} was edited; migrations are append-only",
                    )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration.name)
            await secure_schema(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
