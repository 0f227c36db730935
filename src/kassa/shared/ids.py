"""Identifiers: time-ordered UUIDv7 for generated ids, validation for client-chosen ones.

Every pattern in kassa is anchored with `\\A`/`^` and `\\Z`, never `$`: in Python `$` also matches
before a final newline, so `"abc\\n"` would pass a `^...$` check and reach the database.
"""

from __future__ import annotations

import re

import uuid_utils

from kassa.shared.limits import account_id_chars_max

# Client-chosen ids for accounts and transfers: 1-64 chars of [A-Za-z0-9_.:-]. msgspec validates
# a `pattern` with `re.search`, so the pattern itself must be anchored at both ends.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}\Z"
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def new_id() -> str:
    """A UUIDv7 string: unique, and sortable by creation time (good for B-tree locality)."""
    return str(uuid_utils.uuid7())


def is_client_id(value: str) -> bool:
    return len(value) <= account_id_chars_max and _CLIENT_ID.fullmatch(value) is not None
