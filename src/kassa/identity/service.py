"""Identity service: tenants, API keys, authentication and rate limits of requests.

Authentication (`authn.Authenticator`) caches verified keys in-process and drops a key the
moment any process revokes or changes it (LISTEN/NOTIFY; a change answers once every API
process applied it or stopped trusting its cache, see authn); rate limits (`ratelimit`) are token
buckets per key, in process or in Redis.

Row-level security: `api_keys` is a tenant table, invisible to the application role outside a
tenant scope, but a request names its tenant only through its key. The lookup therefore goes
through `kassa_authenticate(hash)` (migrations 0007, 0040), a SECURITY DEFINER function that
returns the principal of a live key with that hash and nothing else: no policy opens the table,
and no query of the application can list keys across tenants. Creating a tenant is scoped to
the new tenant (plus the admin's idempotency scope).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from kassa.events.outbox import NewEvent, write_events
from kassa.identity import keys
from kassa.identity.audit import record_audit
from kassa.identity.authn import Authenticator
from kassa.identity.domain.model import IssuedKey, Principal, Tenant, hash_secret, issue_key
from kassa.identity.errors import RateLimited
from kassa.identity.ratelimit import InProcessLimiter, Limiter, limits_of
from kassa.shared.ids import new_id
from kassa.shared.limits import rate_limit_burst_default, rate_limit_per_s_default
from kassa.store import idempotency, tenancy

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from datetime import datetime

    import asyncpg

    from kassa.identity.domain.model import ApiKey
    from kassa.identity.domain.ratelimit import Decision
    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Conn

FIRST_KEY_NAME = "default"


class IdentityService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        limiter: Limiter | None = None,
        rate_limit: tuple[int, int] = (rate_limit_per_s_default, rate_limit_burst_default),
    ) -> None:
        self.pool = pool
        self.authn = Authenticator(pool)
        self.limiter = limiter or InProcessLimiter()
        self.rate_limit = rate_limit  # (per second, burst) for keys without their own

    def start(self, dsn: str) -> None:
        """Listen for key revocations (see authn); call once the event loop runs."""
        self.authn.start(dsn)

    async def close(self) -> None:
        await self.authn.close()
        await self.limiter.close()

    def authenticate(self, secret: str) -> Awaitable[Principal]:
        """Raises Unauthorized for a missing, unknown, revoked or expired key. (The authenticator's
        awaitable itself: no coroutine of this method's around it, on every request.)"""
        return self.authn.authenticate(secret)

    async def admit(self, principal: Principal) -> Decision:
        """Take one token from the key's bucket. Raises RateLimited when it is empty."""
        rate, burst = limits_of(principal, *self.rate_limit)
        decision = await self.limiter.take(principal.key_id, rate, burst)
        if not decision.allowed:
            raise RateLimited(decision)
        return decision

    # A tenant's API keys (kassa.identity.keys); each change is audited.

    async def create_key(self, tenant_id: str, actor: str | None, spec: keys.KeySpec) -> tuple[ApiKey, IssuedKey]:
        return await keys.create_key(self.pool, tenant_id, actor, spec)

    async def list_keys(self, tenant_id: str, after_id: str | None, limit: int) -> list[ApiKey]:
        return await keys.list_keys(self.pool, tenant_id, after_id, limit)

    async def get_key(self, tenant_id: str, key_id: str) -> ApiKey:
        return await keys.get_key(self.pool, tenant_id, key_id)

    async def revoke_key(self, tenant_id: str, actor: str | None, key_id: str) -> ApiKey:
        revoked, _changed = await keys.revoke_key(self.pool, tenant_id, actor, key_id)
        self.authn.forget(key_id)  # at once here; other processes by NOTIFY
        # Even when this call changed nothing: a revocation retried after a failed wait must
        # not answer before every process has applied it.
        await self.authn.wait_applied_everywhere()
        return revoked

    async def rotate_key(
        self, tenant_id: str, actor: str | None, key_id: str, overlap_s: int, expires_at: datetime | None
    ) -> tuple[ApiKey, IssuedKey, ApiKey]:
        rotated = await keys.rotate_key(self.pool, tenant_id, actor, key_id, overlap_s, expires_at)
        self.authn.forget(key_id)
        await self.authn.wait_applied_everywhere()  # the old key's new expiry, in every process
        return rotated

    # Without an Idempotency-Key claim there is nothing to replay: callers get the tenant itself.
    @overload
    async def create_tenant(
        self, name: str, claim: None, render: Any, actor: str | None = None
    ) -> tuple[Tenant, IssuedKey]: ...

    @overload
    async def create_tenant(
        self, name: str, claim: IdemClaim | None, render: Any, actor: str | None = None
    ) -> tuple[Tenant, IssuedKey] | Replay: ...

    async def create_tenant(
        self, name: str, claim: IdemClaim | None, render: Any, actor: str | None = None
    ) -> tuple[Tenant, IssuedKey] | Replay:
        """Create a tenant and its first API key (scope `admin`: everything of the tenant).
        Raises IdempotencyKeyReused/InFlight."""
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
            first = await keys.insert_key(conn, tenant_id, key, keys.KeySpec(FIRST_KEY_NAME, ("admin",)), None)
            await record_audit(
                conn,
                tenant_id=tenant_id,
                actor_key_id=actor,
                action="tenant.created",
                target_type="tenant",
                target_id=tenant_id,
                after={"id": tenant_id, "name": name, "first_api_key": keys.key_view(first)},
            )
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
                    await _insert_admin_key(conn, IssuedKey(id="key_admin_env", secret=secret), on_conflict_id=True)
                return None
            if await conn.fetchval("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"):
                return None
            key = issue_key()
            await _insert_admin_key(conn, key)
            return key


async def _insert_admin_key(conn: Conn, key: IssuedKey, on_conflict_id: bool = False) -> None:
    if on_conflict_id:
        # A changed KASSA_ADMIN_KEY replaces the previous env-provided admin key.
        await conn.execute("DELETE FROM api_keys WHERE id = $1", key.id)
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, role, secret_hash, name)"
        " VALUES ($1, NULL, 'admin', $2, 'platform admin')",
        key.id,
        key.secret_hash,
    )
