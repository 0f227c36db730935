"""Identity service: tenants, API keys and authentication of requests.

Verified keys are cached in-process for a short time so authentication costs no database
round trip on the hot path; a revoked key stops working within `_CACHE_TTL_S`.

Row-level security: `api_keys` is a tenant table, invisible to the application role outside a
tenant scope, but a request names its tenant only through its key. The lookup therefore goes
through `kassa_authenticate(hash)` (migration 0007), a SECURITY DEFINER function that returns
the principal of a live key with that hash and nothing else: no policy opens the table, and no
query of the application can list keys across tenants. Creating a tenant is scoped to the new
tenant (plus the admin's idempotency scope).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from kassa.events.outbox import NewEvent, write_events
from kassa.identity.domain.model import IssuedKey, Principal, Tenant, hash_secret, issue_key
from kassa.shared.errors import Unauthorized
from kassa.shared.ids import new_id
from kassa.store import idempotency, tenancy

if TYPE_CHECKING:
    import asyncpg

    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Conn

_CACHE_TTL_S = 30.0
_CACHE_SIZE_MAX = 10_000


class IdentityService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    async def authenticate(self, secret: str) -> Principal:
        """Raises Unauthorized for a missing, unknown or revoked key."""
        if not secret:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        digest = hash_secret(secret)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT id, role, tenant_id FROM kassa_authenticate($1)", digest)
        if row is None:
            raise Unauthorized("invalid API key")
        principal = Principal(key_id=row["id"], role=row["role"], tenant_id=row["tenant_id"])
        self._cache[digest] = (now + _CACHE_TTL_S, principal)
        if len(self._cache) > _CACHE_SIZE_MAX:
            self._cache.popitem(last=False)
        return principal

    async def create_tenant(self, name: str, claim: IdemClaim | None, render: Any) -> tuple[Tenant, IssuedKey] | Replay:
        """Create a tenant and its first API key. Raises IdempotencyKeyReused/InFlight."""
        key = issue_key()
        tenant_id = "ten_" + new_id().replace("-", "")
        async with self.pool.acquire() as conn, conn.transaction():
            await tenancy.scope(conn, [tenant_id, *([claim.tenant_id] if claim is not None else [])])
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            created_at = await conn.fetchval(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at", tenant_id, name
            )
            tenant = Tenant(id=tenant_id, name=name, created_at=created_at)
            await _insert_key(conn, key, "tenant", tenant_id)
            await write_events(
                conn,
                [
                    NewEvent(
                        tenant_id=tenant_id,
                        type="TenantCreated",
                        aggregate_type="tenant",
                        aggregate_id=tenant_id,
                        data={"id": tenant_id, "name": name, "created_at": tenant.created_at},
                    )
                ],
                tenant.created_at,
            )
            if claim is not None:
                status, body = render(tenant, key)
                await idempotency.complete(conn, [(claim, status, body)])
        return tenant, key

    async def ensure_admin_key(self, secret: str | None) -> IssuedKey | None:
        """Make `secret` a valid admin key (idempotent). With no secret, create one only if no
        admin key exists yet, and return it (the only time it is shown). Admin keys belong to no
        tenant, so this runs on the schema owner's pool (`kassa up`'s setup), never the API's."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kassa.admin_key'))")
            if secret is not None:
                exists = await conn.fetchval("SELECT 1 FROM api_keys WHERE secret_hash = $1", hash_secret(secret))
                if not exists:
                    await _insert_key(
                        conn, IssuedKey(id="key_admin_env", secret=secret), "admin", None, on_conflict_id=True
                    )
                return None
            if await conn.fetchval("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"):
                return None
            key = issue_key()
            await _insert_key(conn, key, "admin", None)
            return key


async def _insert_key(
    conn: Conn, key: IssuedKey, role: str, tenant_id: str | None, on_conflict_id: bool = False
) -> None:
    if on_conflict_id:
        # A changed KASSA_ADMIN_KEY replaces the previous env-provided admin key.
        await conn.execute("DELETE FROM api_keys WHERE id = $1", key.id)
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, role, secret_hash) VALUES ($1, $2, $3, $4)",
        key.id,
        tenant_id,
        role,
        key.secret_hash,
    )
