"""The master key file (KASSA_MASTER_KEY_FILE): loading it, and generating it for `kassa up`.

The file holds one key per line, base64 (standard alphabet) of 32 bytes: the first line is the
primary key, which seals everything new; later lines are retired keys that still open what
they sealed. Rotating the master key is therefore: put a new line first, keep the old one
below it, restart. Lines starting with `#` and blank lines are ignored.

`kassa up` generates the file under KASSA_DATA_DIR with mode 0600 when it is missing; in
production the file is mounted from a secret store and never generated. The key is never
logged: errors name the file, not its content.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING

from kassa.shared.crypto import KEY_BYTES, KeyRing, new_key

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MasterKeyError", "create_private_file", "ensure_master_key", "load_keyring"]


class MasterKeyError(RuntimeError):
    """The master key file is missing, unreadable or malformed (the message names the file)."""


def _decode(line: str, path: Path, number: int) -> bytes:
    try:
        key = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{path}: line {number} is not base64") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"{path}: line {number} is not a {KEY_BYTES}-byte key")
    return key


def load_keyring(path: Path) -> KeyRing:
    """Raises MasterKeyError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise MasterKeyError(
            f"master key file {path} cannot be read ({exc.strerror}); set KASSA_MASTER_KEY_FILE, "
            "or let `kassa up` generate one under KASSA_DATA_DIR"
        ) from None
    keys = [
        _decode(line.strip(), path, number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise MasterKeyError(f"master key file {path} holds no key")
    return KeyRing(keys[0], tuple(keys[1:]))


def create_private_file(path: Path, text: str) -> bool:
    """Write `text` to a new file readable by its owner only (mode 0600 from the first byte, not
    chmod-ed afterwards); False, writing nothing, if `path` exists. Creation is exclusive, so of
    two processes racing here exactly one writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True


def ensure_master_key(path: Path) -> bool:
    """Create the key file `path` with a fresh key unless it exists; True if it was created."""
    return create_private_file(path, base64.b64encode(new_key()).decode() + "\n")
