"""A tenant's API keys: create, list, get, revoke, rotate. Each change writes its audit record
in the same transaction, and the database trigger on `api_keys` tells every API process.

Secrets are shown once, in the response of create and rotate, and stored nowhere (only their
SHA-256); in particular no Idempotency-Key record keeps them, so these endpoints take no
Idempotency-Key: a retried create makes a second key, which the caller lists and revokes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kassa.identity.audit import record_audit
from kassa.identity.domain import scopes
from kassa.identity.domain.model import ApiKey, IssuedKey, issue_key
from kassa.identity.errors import ApiKeyNotFound, ScopeInvalid
from kassa.shared.clock import to_rfc3339, utcnow
from kassa.shared.errors import InvalidRequest, Unprocessable
from kassa.shared.invariants import invariant
from kassa.shared.limits import (
    api_key_lifetime_s_max,
    api_key_name_chars_max,
    api_key_rotation_overlap_s_max,
    api_key_scopes_max,
    api_keys_per_tenant_max,
    rate_limit_per_s_max,
)
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.store.pool import Conn, Pool

_COLUMNS = (
    "id, tenant_id, name, scopes, created_at, expires_at, revoked_at, last_used_at,"
    " rate_limit_per_s, rate_limit_burst, rotated_from"
)


class ApiKeyExpiryInvalid(Unprocessable):
    code = "api_key_expiry_invalid"
    title = "The key's expiry is outside the allowed range"


class ApiKeyLimitReached(Unprocessable):
    code = "api_key_limit_reached"
    title = "This tenant has the most live API keys it may have"


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str
    scopes: tuple[str, ...]
    expires_at: datetime | None = None
    rate_limit_per_s: int | None = None
    rate_limit_burst: int | None = None


def check_spec(spec: KeySpec, now: datetime) -> KeySpec:
    """The spec with its scopes de-duplicated and sorted. Raises ScopeInvalid, InvalidRequest,
    ApiKeyExpiryInvalid."""
    if not 1 <= len(spec.scopes) <= api_key_scopes_max:
        raise ScopeInvalid(f"a key has 1 to {api_key_scopes_max} scopes")
    unknown = sorted(s for s in set(spec.scopes) if s not in scopes.TENANT_SCOPES)
    if unknown:
        raise ScopeInvalid(f"unknown or not grantable scope: {', '.join(unknown[:5])}")
    if len(spec.name) > api_key_name_chars_max or any(c < " " or c == "\x7f" for c in spec.name):
        raise InvalidRequest(f"name is at most {api_key_name_chars_max} characters, none of them control characters")
    if spec.expires_at is not None:
        if spec.expires_at.tzinfo is None:
            raise InvalidRequest("expires_at must include a time zone offset (e.g. Z)")
        if not now < spec.expires_at <= now + timedelta(seconds=api_key_lifetime_s_max):
            raise ApiKeyExpiryInvalid(f"expires_at must be in the future, at most {api_key_lifetime_s_max} s ahead")
    for value in (spec.rate_limit_per_s, spec.rate_limit_burst):
        if value is not None and not 1 <= value <= rate_limit_per_s_max:
            raise InvalidRequest(f"rate limits are integers from 1 to {rate_limit_per_s_max}")
    return KeySpec(spec.name, tuple(sorted(set(spec.scopes))), *_rest(spec))


def _rest(spec: KeySpec) -> tuple[datetime | None, int | None, int | None]:
    return spec.expires_at, spec.rate_limit_per_s, spec.rate_limit_burst


def key_view(key: ApiKey) -> dict[str, Any]:
    """What an audit record keeps of a key: everything but its secret (never stored anyway)."""
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "expires_at": None if key.expires_at is None else to_rfc3339(key.expires_at),
        "revoked_at": None if key.revoked_at is None else to_rfc3339(key.revoked_at),
        "rate_limit_per_s": key.rate_limit_per_s,
        "rate_limit_burst": key.rate_limit_burst,
        "rotated_from": key.rotated_from,
    }


def _key(row: Any) -> ApiKey:
    return ApiKey(**{**dict(row), "scopes": tuple(row["scopes"])})


async def insert_key(conn: Conn, tenant_id: str, key: IssuedKey, spec: KeySpec, rotated_from: str | None) -> ApiKey:
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (id, tenant_id, role, secret_hash, name, scopes, expires_at, rate_limit_per_s,
                                  rate_limit_burst, rotated_from)
            VALUES ($1, $2, 'tenant', $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLUMNS}""",
        key.id,
        tenant_id,
        key.secret_hash,
        spec.name,
        list(spec.scopes),
        *_rest(spec),
        rotated_from,
    )
    invariant(row is not None and row["tenant_id"] == tenant_id, "a new key belongs to its tenant")
    return _key(row)


async def _lock_tenant_keys(conn: Conn, tenant_id: str) -> None:
    """Serialises key creation per tenant so the live-key count cannot be raced past its limit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('kassa.api_keys:' || $1, 0))", tenant_id)
    live = await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        tenant_id,
    )
    if live >= api_keys_per_tenant_max:
        raise ApiKeyLimitReached(f"at most {api_keys_per_tenant_max} live API keys per tenant; revoke one first")


async def _audit(
    conn: Conn, tenant_id: str, actor: str | None, action: str, key_id: str, before: Any = None, after: Any = None
) -> None:
    await record_audit(
        conn,
        tenant_id=tenant_id,
        actor_key_id=actor,
        action=action,
        target_type="api_key",
        target_id=key_id,
        before=before,
        after=after,
    )


async def create_key(pool: Pool, tenant_id: str, actor_key_id: str | None, spec: KeySpec) -> tuple[ApiKey, IssuedKey]:
    """A new key of the tenant. Raises ScopeInvalid, InvalidRequest, ApiKeyLimitReached."""
    spec = check_spec(spec, utcnow())
    issued = issue_key()
    async with tenant_transaction(pool, tenant_id) as conn:
        await _lock_tenant_keys(conn, tenant_id)
        key = await insert_key(conn, tenant_id, issued, spec, None)
        await _audit(conn, tenant_id, actor_key_id, "api_key.created", key.id, after=key_view(key))
    return key, issued


async def list_keys(pool: Pool, tenant_id: str, after_id: str | None, limit: int) -> list[ApiKey]:
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await conn.fetch(
            f"""SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2)
                ORDER BY id LIMIT $3""",
            tenant_id,
            after_id,
            limit,
        )
    return [_key(r) for r in rows]


async def get_key(pool: Pool, tenant_id: str, key_id: str) -> ApiKey:
    """Raises ApiKeyNotFound (also for another tenant's key: it does not exist here)."""
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2", tenant_id, key_id
        )
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id}")
    return _key(row)


async def _locked(conn: Conn, tenant_id: str, key_id: str) -> ApiKey:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, key_id
    )
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id}")
    return _key(row)


async def revoke_key(pool: Pool, tenant_id: str, actor_key_id: str | None, key_id: str) -> tuple[ApiKey, bool]:
    """Revoke at once; returns the key and whether this call revoked it (revoking a revoked key
    changes nothing). Raises ApiKeyNotFound."""
    async with tenant_transaction(pool, tenant_id) as conn:
        before = await _locked(conn, tenant_id, key_id)
        if before.revoked_at is not None:
            return before, False
        row = await conn.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            tenant_id,
            key_id,
        )
        after = _key(row)
        await _audit(conn, tenant_id, actor_key_id, "api_key.revoked", key_id, key_view(before), key_view(after))
    return after, True


async def rotate_key(
    pool: Pool, tenant_id: str, actor_key_id: str | None, key_id: str, overlap_s: int, expires_at: datetime | None
) -> tuple[ApiKey, IssuedKey, ApiKey]:
    """A new key with the old one's name, scopes and limits; the old key stays valid for
    `overlap_s` more seconds (0: revoked now), never longer than it would have anyway.
    Returns (new key, its secret, old key after). Raises ApiKeyNotFound (unknown, revoked or
    expired key), InvalidRequest."""
    invariant(0 <= overlap_s <= api_key_rotation_overlap_s_max, "the route bounds the overlap")
    now = utcnow()
    async with tenant_transaction(pool, tenant_id) as conn:
        old = await _locked(conn, tenant_id, key_id)
        if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
            raise ApiKeyNotFound(f"API key {key_id} is revoked or expired; create a new key instead")
        spec = check_spec(KeySpec(old.name, old.scopes, expires_at, old.rate_limit_per_s, old.rate_limit_burst), now)
        # Not counted against the live-key limit: the old key ends with the overlap.
        issued = issue_key()
        new = await insert_key(conn, tenant_id, issued, spec, old.id)
        if overlap_s == 0:
            sql = "UPDATE api_keys SET revoked_at = now()"
        else:
            sql = (
                "UPDATE api_keys"
                " SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $3))"
            )
        row = await conn.fetchrow(
            f"{sql} WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            tenant_id,
            key_id,
            *([] if overlap_s == 0 else [overlap_s]),
        )
        after = _key(row)
        rotated = {**key_view(after), "replaced_by": new.id}
        await _audit(conn, tenant_id, actor_key_id, "api_key.rotated", key_id, key_view(old), rotated)
        await _audit(conn, tenant_id, actor_key_id, "api_key.created", new.id, after=key_view(new))
    return new, issued, after
