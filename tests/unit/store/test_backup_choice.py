"""A restore starts from the newest base backup that finished before the target, never a later one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kassa.store.backup import BaseBackup, choose_backup
from kassa.store.dr_errors import NoBaseBackup

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def backup(label: str, finished_min: int) -> BaseBackup:
    finished = T0 + timedelta(minutes=finished_min)
    return BaseBackup(label, Path(label), finished - timedelta(seconds=30), finished, 1, "0/1", "0/2", "0" * 24)


def test_the_newest_backup_finished_before_the_target_is_chosen() -> None:
    backups = [backup("a", 0), backup("b", 10), backup("c", 20)]
    assert choose_backup(backups, T0 + timedelta(minutes=15)).label == "b"
    assert choose_backup(backups, T0 + timedelta(minutes=25)).label == "c"


def test_a_backup_finishing_exactly_at_the_target_is_not_usable() -> None:
    backups = [backup("a", 0), backup("b", 10)]
    assert choose_backup(backups, T0 + timedelta(minutes=10)).label == "a"


def test_no_backup_before_the_target_is_a_typed_error() -> None:
    with pytest.raises(NoBaseBackup):
        choose_backup([backup("a", 10)], T0)
