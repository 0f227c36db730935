"""The master key file: generated once with mode 0600, loaded as a key ring (first line primary,
later lines retired), and refused with a message that names the file but never its content."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest

from kassa.shared.crypto import new_key
from kassa.store.master_key import MasterKeyError, create_private_file, ensure_master_key, load_keyring

if TYPE_CHECKING:
    from pathlib import Path


def test_the_key_file_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master_key"
    assert ensure_master_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    ring = load_keyring(path)
    assert not ensure_master_key(path)  # never replaced: that would orphan every sealed secret
    assert load_keyring(path).primary == ring.primary
    assert ring.open(ring.seal(b"x", aad=b"a"), aad=b"a") == b"x"


def test_a_rotated_file_seals_with_its_first_key_and_still_opens_with_the_others(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    sealed_before = load_keyring(_write(tmp_path, [old])).seal(b"before", aad=b"a")
    path = _write(tmp_path, [new, old], comment=True)
    ring = load_keyring(path)
    assert ring.primary == new and ring.retired == (old,)
    assert ring.open(sealed_before, aad=b"a") == b"before"


@pytest.mark.parametrize("content", ["", "# only a comment\n", "not base64!!\n", base64.b64encode(b"short").decode()])
def test_a_malformed_key_file_is_refused_without_showing_its_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master_key"
    path.write_text(content)
    with pytest.raises(MasterKeyError) as raised:
        load_keyring(path)
    assert str(path) in str(raised.value)
    assert not content.strip() or content.strip() not in str(raised.value)


def test_a_missing_key_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="KASSA_MASTER_KEY_FILE"):
        load_keyring(tmp_path / "absent")


def test_private_files_are_created_exclusively(tmp_path: Path) -> None:
    path = tmp_path / "admin_key"
    assert create_private_file(path, "one")
    assert not create_private_file(path, "two")
    assert path.read_text() == "one" and (path.stat().st_mode & 0o777) == 0o600


def _write(tmp_path: Path, keys: list[bytes], comment: bool = False) -> Path:
    path = tmp_path / "master_key"
    lines = ["# rotated: the first key seals"] if comment else []
    path.write_text("\n".join([*lines, *(base64.b64encode(k).decode() for k in keys)]) + "\n")
    return path
