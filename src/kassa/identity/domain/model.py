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
    """Who a request acts as. `scopes` is already expanded (implied scopes included); the
    platform's admin key holds every scope. `expires_at` is a POSIX time (cheap to compare on
    every cache hit); the rate limit fields are None for the named default."""

    key_id: str
    role: Role
    tenant_id: str | None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None
    rate_limit_per_s: int | None = None
    rate_limit_burst: int | None = None

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


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A tenant's API key as listed: never its secret (which is not stored) nor its hash."""

    id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rate_limit_per_s: int | None
    rate_limit_burst: int | None
    rotated_from: str | None


def issue_key() -> IssuedKey:
    """A 256-bit random secret; the key id is embedded so logs can name a key without its secret."""
    key_id = "key_" + secrets.token_hex(8)
    return IssuedKey(id=key_id, secret=f"{_SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}")


def hash_secret(secret: str) -> bytes:
    """SHA-256 is right for high-entropy random secrets (no dictionary to attack)."""
    return hashlib.sha256(secret.encode()).digest()
