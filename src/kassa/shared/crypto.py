"""Authenticated encryption of small secrets at rest (AES-256-GCM), and envelope encryption.

Pure functions over bytes: no key is read from anywhere here (`kassa.store.master_key` loads
the master key from KASSA_MASTER_KEY_FILE), so every context can use them and tests need no
files.

API
---
`new_key()`
    32 random bytes from the OS CSPRNG: a master key or a data key.
`KeyRing(primary, retired=())`
    The keys one process holds. `seal` always uses `primary`; `open` picks the key a sealed
    value names (its key id), so after a key rotation values sealed under a retired key still
    open, and are re-sealed under the primary at the owner's pace.
`ring.seal(plaintext, aad=...) -> bytes`, `ring.open(sealed, aad=...) -> bytes`
    Encrypt and decrypt. `aad` (associated data) is authenticated, not stored: it binds a
    value to where it belongs (for example b"webhook-secret:<tenant>:<endpoint>"), so a
    sealed value copied into another row or another column fails to open. `open` raises
    `DecryptionFailed` for a wrong key, a wrong `aad` or any tampering.
`ring.wrap_key(data_key, aad=...)`, `ring.unwrap_key(wrapped, aad=...)`
    Envelope encryption: a per-tenant (or per-record) data key is stored wrapped under the
    master key next to the data it protects; the data is sealed with `KeyRing(data_key)`.
    Rotating the master key then re-wraps the data keys only, and erasing one tenant's data
    key makes all its data unreadable at once (crypto-shredding, for PII erasure requests).

Sealed format (version 1), all in one `bytea`:
    b"\\x01" | key id (8 bytes) | nonce (12 random bytes) | ciphertext | GCM tag (16 bytes)
The key id is HMAC-SHA256(key, "kassa key id")[:8]: it names a key without revealing it. A
random 96-bit nonce per seal is safe far beyond the number of values kassa seals under one key
(NIST SP 800-38D bounds random nonces at 2**32 messages per key).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kassa.shared.invariants import invariant

__all__ = ["KEY_BYTES", "DecryptionFailed", "KeyRing", "key_id", "new_key"]

KEY_BYTES: Final = 32  # AES-256
_VERSION: Final = b"\x01"
_KEY_ID_BYTES: Final = 8
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_HEADER_BYTES: Final = len(_VERSION) + _KEY_ID_BYTES + _NONCE_BYTES
# Wrapped data keys carry their own associated-data prefix, so that a wrapped key can never be
# mistaken for (or opened as) a sealed value of the same row, and vice versa.
_WRAP_AAD: Final = b"kassa:wrapped-key:"


class DecryptionFailed(Exception):
    """A sealed value did not open: unknown key, wrong associated data, or tampering. Raised
    without the value or the key in its message."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_id(key: bytes) -> bytes:
    invariant(len(key) == KEY_BYTES, "keys are 32 bytes (AES-256)")
    return hmac.new(key, b"kassa key id", hashlib.sha256).digest()[:_KEY_ID_BYTES]


@dataclass(frozen=True, slots=True)
class KeyRing:
    primary: bytes = field(repr=False)
    retired: tuple[bytes, ...] = field(default=(), repr=False)
    _by_id: dict[bytes, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = (self.primary, *self.retired)
        invariant(all(len(k) == KEY_BYTES for k in keys), "keys are 32 bytes (AES-256)")
        object.__setattr__(self, "_by_id", {key_id(k): AESGCM(k) for k in reversed(keys)})

    @property
    def primary_id(self) -> bytes:
        return key_id(self.primary)

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        header = _VERSION + self.primary_id + nonce
        return header + self._by_id[self.primary_id].encrypt(nonce, plaintext, _VERSION + aad)

    def open(self, sealed: bytes, *, aad: bytes) -> bytes:
        """Raises DecryptionFailed."""
        if len(sealed) < _HEADER_BYTES + _TAG_BYTES or sealed[:1] != _VERSION:
            raise DecryptionFailed("not a sealed value of a known version")
        cipher = self._by_id.get(sealed[1 : 1 + _KEY_ID_BYTES])
        if cipher is None:
            raise DecryptionFailed("sealed under a key this process does not hold")
        nonce = sealed[1 + _KEY_ID_BYTES : _HEADER_BYTES]
        try:
            return cipher.decrypt(nonce, sealed[_HEADER_BYTES:], _VERSION + aad)
        except InvalidTag:
            raise DecryptionFailed("sealed value failed authentication (wrong key, context or tampered)") from None

    def needs_reseal(self, sealed: bytes) -> bool:
        """Whether a value was sealed under a retired key (re-seal it after a rotation)."""
        return sealed[1 : 1 + _KEY_ID_BYTES] != self.primary_id

    def wrap_key(self, data_key: bytes, *, aad: bytes) -> bytes:
        invariant(len(data_key) == KEY_BYTES, "data keys are 32 bytes (AES-256)")
        return self.seal(data_key, aad=_WRAP_AAD + aad)

    def unwrap_key(self, wrapped: bytes, *, aad: bytes) -> bytes:
        """Raises DecryptionFailed."""
        data_key = self.open(wrapped, aad=_WRAP_AAD + aad)
        if len(data_key) != KEY_BYTES:
            raise DecryptionFailed("a wrapped value is not a data key")
        return data_key
