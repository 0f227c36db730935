"""Two writers on the same keys: concurrent creates cannot pass the live-key limit, and two
concurrent rotations that revoke the old key at once cannot both succeed."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.identity.errors import ApiKeyNotFound
from kassa.identity.keys import ApiKeyLimitReached, KeySpec
from kassa.identity.service import IdentityService
from kassa.shared.limits import api_keys_per_tenant_max

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_concurrent_creates_cannot_pass_the_live_key_limit(app_pool: Pool, pool: Pool) -> None:
    identity = IdentityService(app_pool)
    result = await identity.create_tenant(f"conc-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant, first = result
    # Fill up to two below the limit directly (the first key is live too).
    await pool.execute(
        """INSERT INTO api_keys (id, tenant_id, role, secret_hash, scopes)
           SELECT 'key_fill_' || $1 || '_' || n, $1, 'tenant', gen_random_uuid()::text::bytea, ARRAY['accounts:read']
           FROM generate_series(1, $2::integer) AS n""",
        tenant.id,
        api_keys_per_tenant_max - 3,
    )
    outcomes = await asyncio.gather(
        *(identity.create_key(tenant.id, first.id, KeySpec(f"c{n}", ("accounts:read",))) for n in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 2
    assert all(isinstance(o, ApiKeyLimitReached) for o in outcomes if isinstance(o, BaseException))
    live = await pool.fetchval("SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id)
    assert live == api_keys_per_tenant_max


async def test_two_immediate_rotations_of_one_key_cannot_both_succeed(app_pool: Pool) -> None:
    identity = IdentityService(app_pool)
    result = await identity.create_tenant(f"conc-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant, first = result
    key, _ = await identity.create_key(tenant.id, first.id, KeySpec("svc", ("accounts:read",)))
    outcomes = await asyncio.gather(
        identity.rotate_key(tenant.id, first.id, key.id, 0, None),
        identity.rotate_key(tenant.id, first.id, key.id, 0, None),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == sorted(["tuple", ApiKeyNotFound.__name__])
    keys = await identity.list_keys(tenant.id, None, 100)
    assert sum(k.rotated_from == key.id for k in keys) == 1
