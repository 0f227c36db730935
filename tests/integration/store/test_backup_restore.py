"""`kassa backup` plus the continuous WAL archive restore the database to a chosen instant: work
committed before it is there, work committed after it is not, and the restored directory serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from kassa.store.backup import (
    allow_replication,
    archive_current_segment,
    archive_options,
    copy_credentials,
    list_backups,
    prepare_backup_dir,
    psql,
)
from kassa.store.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration
KASSA = Path(sys.executable).parent / "kassa"


def kassa(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    return subprocess.run([str(KASSA), *args], env=clean | env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory the unprivileged server user can reach (pytest's work is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="kassa-test-backup-"))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded server runs as an unprivileged user
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def archived_server(work: Path) -> Iterator[tuple[EmbeddedPostgres, Path, dict[str, str]]]:
    """A server archiving its WAL, its backup directory, and the environment for `kassa`."""
    backups = prepare_backup_dir(work / "backups")
    server = EmbeddedPostgres(work / "pg", fsync=False, options=archive_options(backups))
    server.start()
    # What an operator does for an external server: admit replication connections (pg_basebackup).
    allow_replication(server, urlsplit(server.url).username or "postgres")
    env = {"KASSA_DATABASE_URL": server.url, "KASSA_BACKUP_DIR": str(backups), "KASSA_DATA_DIR": str(work)}
    try:
        yield server, backups, env
    finally:
        server.destroy()


def test_restore_to_an_instant_keeps_what_committed_before_it_and_nothing_after(
    archived_server: tuple[EmbeddedPostgres, Path, dict[str, str]], work: Path
) -> None:
    server, backups, env = archived_server
    psql(server, "CREATE TABLE drill (n int); INSERT INTO drill VALUES (1)", "kassa")
    archive_current_segment(server)
    assert list((backups / "wal").iterdir()) == []  # no base backup yet: nothing to replay WAL onto
    taken = kassa(env, "backup")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert [b.label for b in list_backups(backups)] != []
    psql(server, "INSERT INTO drill VALUES (2)", "kassa")
    target = datetime.now(UTC)
    psql(server, "INSERT INTO drill VALUES (3)", "kassa")
    archive_current_segment(server)
    assert all(p.name.endswith(".gz") for p in (backups / "wal").iterdir())

    restored = kassa(env, "restore", "--to", target.isoformat(), "--into", str(work / "restored"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    copy_credentials(server.root, work / "restored")  # a copy of the cluster has its passwords
    copy = EmbeddedPostgres(work / "restored", fsync=False)
    copy.start()
    try:
        assert psql(copy, "SELECT string_agg(n::text, ',' ORDER BY n) FROM drill", "kassa") == "1,2"
        assert psql(copy, "SELECT pg_is_in_recovery()") == "f"  # promoted: it takes writes
    finally:
        copy.destroy()


def test_restore_to_before_the_first_backup_is_refused(
    archived_server: tuple[EmbeddedPostgres, Path, dict[str, str]], work: Path
) -> None:
    env = archived_server[2]
    before = datetime.now(UTC)
    assert kassa(env, "backup").returncode == 0
    refused = kassa(env, "restore", "--to", before.isoformat(), "--into", str(work / "restored"))
    assert refused.returncode == 1
    assert "no_base_backup" in refused.stdout
    assert not (work / "restored").exists()


def test_pruning_keeps_the_newest_backups_and_only_the_wal_they_need(
    archived_server: tuple[EmbeddedPostgres, Path, dict[str, str]],
) -> None:
    server, backups, env = archived_server
    assert kassa(env, "backup").returncode == 0
    psql(server, "CREATE TABLE drill (n int); INSERT INTO drill VALUES (1)", "kassa")
    archive_current_segment(server)
    assert kassa(env, "backup", "--keep", "1").returncode == 0
    [kept] = list_backups(backups)
    archived = sorted(p.name[:24] for p in (backups / "wal").iterdir())
    assert archived, "the newest backup's WAL is kept"
    assert archived[0] >= kept.start_wal_file


def test_restore_with_replace_becomes_the_embedded_database_and_keeps_the_old_one(work: Path) -> None:
    data_dir = work / "data"
    backups = prepare_backup_dir(data_dir / "backups")
    live = EmbeddedPostgres(data_dir / "postgres", fsync=False, options=archive_options(backups))
    live.start()
    try:
        allow_replication(live, urlsplit(live.url).username or "postgres")
        env = {"KASSA_DATABASE_URL": live.url, "KASSA_DATA_DIR": str(data_dir)}
        psql(live, "CREATE TABLE drill (n int); INSERT INTO drill VALUES (1)", "kassa")
        assert kassa(env, "backup").returncode == 0
        target = datetime.now(UTC)
        psql(live, "INSERT INTO drill VALUES (2)", "kassa")  # the mistake to undo
        archive_current_segment(live)
    finally:
        live.stop()
    replaced = kassa({"KASSA_DATA_DIR": str(data_dir)}, "restore", "--to", target.isoformat(), "--replace")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert len(list(data_dir.glob("postgres.before-restore-*"))) == 1
    again = EmbeddedPostgres(data_dir / "postgres", fsync=False)  # what the next `kassa up` starts
    again.start()
    try:
        assert psql(again, "SELECT string_agg(n::text, ',') FROM drill", "kassa") == "1"
    finally:
        again.destroy()
