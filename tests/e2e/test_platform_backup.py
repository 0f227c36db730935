"""`kassa up` archives its embedded PostgreSQL's WAL continuously, and `kassa backup` backs up
the running platform through its runtime file, with no database URL given."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kassa.store.backup import list_backups

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
KASSA = Path(sys.executable).parent / "kassa"
ARCHIVE_WAIT_S = 60.0


async def test_kassa_up_archives_wal_and_kassa_backup_finds_the_running_database(
    platform: Platform, platform_db: Pool
) -> None:
    assert await platform_db.fetchval("SELECT current_setting('archive_mode')") == "on"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")} | {
        "KASSA_DATA_DIR": str(platform.data_dir)
    }
    taken = subprocess.run([str(KASSA), "backup"], env=env, capture_output=True, text=True, timeout=300)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    backups = list_backups(platform.data_dir / "backups")
    assert len(backups) == 1
    # The segment the backup ended in reaches the archive, and no archiving attempt failed.
    deadline = time.monotonic() + ARCHIVE_WAIT_S
    while (last := await platform_db.fetchval("SELECT last_archived_wal FROM pg_stat_archiver")) is None or (
        last < backups[0].start_wal_file
    ):
        assert time.monotonic() < deadline, f"nothing archived past {backups[0].start_wal_file}"
        await asyncio.sleep(0.05)
    assert await platform_db.fetchval("SELECT failed_count FROM pg_stat_archiver") == 0
