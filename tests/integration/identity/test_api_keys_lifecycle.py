"""API keys on real PostgreSQL: scopes reach the principal, expiry and revocation end a key at
once in every process (LISTEN/NOTIFY; no cache while the listener is down), rotation keeps both
keys valid for the overlap, and last use is recorded without touching the request path."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.identity.domain.model import hash_secret
from kassa.identity.errors import ScopeInvalid
from kassa.identity.keys import ApiKeyExpiryInvalid, KeySpec
from kassa.identity.service import IdentityService
from kassa.shared.clock import utcnow
from kassa.shared.errors import Unauthorized

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from kassa.identity.domain.model import IssuedKey, Tenant
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
WAIT_S = 10.0


async def wait_for(predicate: Callable[[], object], what: str) -> None:
    """Wait on state (bounded), never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def listening(pool: Pool, dsn: str) -> AsyncIterator[IdentityService]:
    """An identity service as an API process has it: with its revocation listener up."""
    service = IdentityService(pool)
    service.start(dsn)
    try:
        assert await service.authn.wait_listening(WAIT_S)
        yield service
    finally:
        await service.close()


async def new_tenant(pool: Pool) -> tuple[Tenant, IssuedKey]:
    result = await IdentityService(pool).create_tenant(f"keys-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    return result


async def test_the_first_key_of_a_tenant_has_every_tenant_scope(app_pool: Pool) -> None:
    _tenant, first = await new_tenant(app_pool)
    principal = await IdentityService(app_pool).authenticate(first.secret)
    assert {"admin", "accounts:write", "transactions:write", "compliance:review"} <= principal.scopes
    assert "tenants:write" not in principal.scopes


async def test_a_created_key_holds_exactly_its_scopes_and_their_implications(app_pool: Pool) -> None:
    tenant, first = await new_tenant(app_pool)
    identity = IdentityService(app_pool)
    key, issued = await identity.create_key(tenant.id, first.id, KeySpec("ro", ("accounts:read", "accounts:read")))
    assert key.scopes == ("accounts:read",)
    principal = await identity.authenticate(issued.secret)
    assert principal.scopes == {"accounts:read"} and principal.tenant_id == tenant.id
    with pytest.raises(ScopeInvalid):
        await identity.create_key(tenant.id, first.id, KeySpec("x", ("tenants:write",)))
    with pytest.raises(ScopeInvalid):
        await identity.create_key(tenant.id, first.id, KeySpec("x", ("accounts:delete",)))


async def test_an_expired_key_is_refused_even_from_the_cache(app_pool: Pool) -> None:
    tenant, first = await new_tenant(app_pool)
    identity = IdentityService(app_pool)
    soon = utcnow() + timedelta(seconds=1)
    key, issued = await identity.create_key(tenant.id, first.id, KeySpec("short", ("accounts:read",), soon))
    assert (await identity.authenticate(issued.secret)).expires_at == soon.timestamp()
    assert hash_secret(issued.secret) in identity.authn._cache
    # Well inside the cache's TTL: only the expiry check on the hit can refuse it.
    await wait_for(lambda: time.time() > soon.timestamp(), "the expiry instant")
    with pytest.raises(Unauthorized):
        await identity.authenticate(issued.secret)
    with pytest.raises(ApiKeyExpiryInvalid):
        await identity.create_key(tenant.id, first.id, KeySpec("past", ("accounts:read",), key.created_at))
    with pytest.raises(ApiKeyExpiryInvalid):
        await identity.create_key(tenant.id, first.id, KeySpec("far", ("accounts:read",), soon + timedelta(days=3650)))


async def test_revocation_in_one_process_ends_the_key_in_another_at_once(app_pool: Pool, app_url: str) -> None:
    tenant, first = await new_tenant(app_pool)
    async with listening(app_pool, app_url) as a, listening(app_pool, app_url) as b:
        key, issued = await a.create_key(tenant.id, first.id, KeySpec("victim", ("accounts:read",)))
        await a.authenticate(issued.secret)
        await b.authenticate(issued.secret)
        assert hash_secret(issued.secret) in b.authn._cache  # b would answer from its cache
        seen = b.authn.invalidations
        await a.revoke_key(tenant.id, first.id, key.id)
        with pytest.raises(Unauthorized):
            await a.authenticate(issued.secret)  # the revoking process: synchronously
        with pytest.raises(Unauthorized):
            await b.authenticate(issued.secret)  # the other: applied before the revocation answered
        await wait_for(lambda: b.authn.invalidations > seen, "the revocation notice in the other process")
        with pytest.raises(Unauthorized):
            await b.authenticate(issued.secret)


async def test_without_its_listener_a_process_does_not_trust_its_cache(
    app_pool: Pool, app_url: str, pool: Pool
) -> None:
    tenant, first = await new_tenant(app_pool)
    async with listening(app_pool, app_url) as b:
        key, issued = await b.create_key(tenant.id, first.id, KeySpec("victim", ("accounts:read",)))
        await b.authenticate(issued.secret)
        # The listener runs as the application role, which may end its own role's backends.
        await app_pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kassa-key-listener'"
        )
        await wait_for(lambda: not b.authn.caching, "the listener to notice its connection is gone")
        # Revoked while nobody listened: the notification is lost for good.
        await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        with pytest.raises(Unauthorized):
            await b.authenticate(issued.secret)
        await wait_for(lambda: b.authn.caching, "the listener to reconnect")
        with pytest.raises(Unauthorized):
            await b.authenticate(issued.secret)


async def test_rotation_keeps_both_keys_valid_for_the_overlap_then_only_the_new(
    app_pool: Pool, app_url: str, pool: Pool
) -> None:
    tenant, first = await new_tenant(app_pool)
    async with listening(app_pool, app_url) as identity:
        old, old_secret = await identity.create_key(tenant.id, first.id, KeySpec("svc", ("payments:write",)))
        new, new_secret, old_after = await identity.rotate_key(tenant.id, first.id, old.id, 3600, None)
        assert new.scopes == old.scopes and new.rotated_from == old.id and new.name == "svc"
        assert old_after.expires_at is not None and old_after.revoked_at is None
        assert (await identity.authenticate(old_secret.secret)).key_id == old.id
        assert (await identity.authenticate(new_secret.secret)).key_id == new.id
        # The overlap ends (moved into the past here): the old key stops, the new one goes on.
        seen = identity.authn.invalidations
        await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE id = $1", old.id)
        await wait_for(lambda: identity.authn.invalidations > seen, "the expiry notice")
        with pytest.raises(Unauthorized):
            await identity.authenticate(old_secret.secret)
        assert (await identity.authenticate(new_secret.secret)).key_id == new.id
        # An overlap of 0 revokes the old key at once.
        newer, newer_secret, revoked = await identity.rotate_key(tenant.id, first.id, new.id, 0, None)
        assert revoked.revoked_at is not None
        with pytest.raises(Unauthorized):
            await identity.authenticate(new_secret.secret)
        assert (await identity.authenticate(newer_secret.secret)).key_id == newer.id


async def test_last_use_is_recorded_and_written_at_most_once_a_minute(app_pool: Pool, pool: Pool) -> None:
    tenant, first = await new_tenant(app_pool)
    identity = IdentityService(app_pool)
    key, issued = await identity.create_key(tenant.id, first.id, KeySpec("u", ("accounts:read",)))
    assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id) is None
    await identity.authenticate(issued.secret)

    async def recorded() -> bool:
        return await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id) is not None

    await wait_for(recorded, "last_used_at")
    first_use = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)
    # The database side also refuses a second write within the minute, whoever calls it.
    await app_pool.execute("SELECT kassa_touch_api_keys($1::text[])", [key.id])
    assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id) == first_use
    assert identity.authn._touch_queue == set()
    await identity.close()


async def test_another_tenants_key_cannot_be_read_revoked_or_rotated(app_pool: Pool) -> None:
    from kassa.identity.errors import ApiKeyNotFound

    tenant_a, first_a = await new_tenant(app_pool)
    tenant_b, first_b = await new_tenant(app_pool)
    identity = IdentityService(app_pool)
    key_a, issued_a = await identity.create_key(tenant_a.id, first_a.id, KeySpec("a", ("accounts:read",)))
    for attempt in (
        identity.get_key(tenant_b.id, key_a.id),
        identity.revoke_key(tenant_b.id, first_b.id, key_a.id),
        identity.rotate_key(tenant_b.id, first_b.id, key_a.id, 60, None),
    ):
        with pytest.raises(ApiKeyNotFound):
            await attempt
    assert [k.id for k in await identity.list_keys(tenant_b.id, None, 100)] == [first_b.id]
    assert (await identity.authenticate(issued_a.secret)).key_id == key_a.id
