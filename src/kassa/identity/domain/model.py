"""Tenants, API keys and the principal a request acts as. Pure: no I/O."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime

Role = Literal["admin", "tenant"]
ADMIN_SCOPE = "_admin"  # idempotency scope of admin requests; not a valid tenant id
_SECRET_PREFIX = "kassa_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role
    tenant_id: str | None

    @property
    def scope(self) -> str:
        """Where this principal's idempotency keys live."""
        return self.tenant_id if self.tenant_id is not None else ADMIN_SCOPE


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: str
    secret: str  # shown once, never stored

    @property
    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)


def issue_key() -> IssuedKey:
    """A 256-bit random secret; the key id is embedded so logs can name a key without its secret."""
    key_id = "key_" + secrets.token_hex(8)
    return IssuedKey(id=key_id, secret=f"{_SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}")


def hash_secret(secret: str) -> bytes:
    """SHA-256 is right for high-entropy random secrets (no dictionary to attack)."""
    return hashlib.sha256(secret.encode()).digest()
