"""The archive_command quotes the backup directory for /bin/sh, and refuses a path it could not quote."""

from __future__ import annotations

from pathlib import Path

import pytest

from kassa.store.backup import archive_options
from kassa.store.dr_errors import BackupFailed


def test_a_path_with_spaces_is_quoted_and_segments_are_passed_as_arguments() -> None:
    options = archive_options(Path("/srv/kassa backups"))
    assert options["archive_command"] == 'sh "/srv/kassa backups/archive-wal.sh" "%p" "%f"'
    assert options["archive_mode"] == "on"


@pytest.mark.parametrize("bad", ['/srv/a"b', "/srv/$HOME", "/srv/`id`", "/srv/a\\b"])
def test_a_path_with_shell_metacharacters_is_refused(bad: str) -> None:
    with pytest.raises(BackupFailed):
        archive_options(Path(bad))
