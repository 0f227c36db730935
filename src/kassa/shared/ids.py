"""Identifiers: time-ordered UUIDv7 for generated ids, validation for client-chosen ones."""

from __future__ import annotations

import re

import uuid_utils

from kassa.shared.limits import account_id_chars_max

# Client-chosen ids for accounts and transfers: 1-64 chars of [A-Za-z0-9_.:-].
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def new_id() -> str:
    """A UUIDv7 string: unique, and sortable by creation time (good for B-tree locality)."""
    return str(uuid_utils.uuid7())


def is_client_id(value: str) -> bool:
    return len(value) <= account_id_chars_max and _CLIENT_ID.match(value) is not None
