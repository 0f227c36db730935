"""Webhook signing secrets at rest: sealed under the master key, bound to their endpoint, and
rows from before sealing keep signing until they are sealed in place."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.notifications import seal_plaintext_secrets
from kassa.notifications.adapters.secret_store import StoredSecret, open_secret
from kassa.notifications.domain.signing import new_secret, verify
from kassa.shared.clock import utcnow
from kassa.shared.crypto import DecryptionFailed, KeyRing, new_key
from kassa.shared.ids import new_id
from kassa.store.tenancy import tenant_transaction
from support.notifications import KEYS, Receiver, all_in, drain_until, fan_out, notification_service, transfer_event

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def row_text(pool: Pool, tenant: str) -> str:
    """Every column of the tenant's endpoint rows, as text."""
    async with tenant_transaction(pool, tenant) as conn:
        rows = await conn.fetch("SELECT t::text AS r FROM webhook_endpoints t WHERE tenant_id = $1", tenant)
    assert rows, "the rows to search must be visible"
    return "\n".join(r["r"] for r in rows)


async def test_secrets_are_stored_sealed_and_open_only_for_their_own_endpoint(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    first = await service.create_endpoint(tenant, "https://example.com/a", ["*"])
    second = await service.create_endpoint(tenant, "https://example.com/b", ["*"])
    rotated = await service.rotate_secret(tenant, first.endpoint.id, grace_s=60)
    stored = await row_text(pool, tenant)
    for secret in (first.secret, second.secret, rotated.secret):
        assert secret not in stored and secret.removeprefix("whsec_")[:12] not in stored
    row = await pool.fetchrow(
        "SELECT secret, previous_secret, secret_sealed, previous_secret_sealed FROM webhook_endpoints"
        " WHERE tenant_id = $1 AND id = $2",
        tenant,
        first.endpoint.id,
    )
    assert row is not None and row["secret"] is None and row["previous_secret"] is None
    assert open_secret(KEYS, tenant, first.endpoint.id, StoredSecret(sealed=row["secret_sealed"])) == rotated.secret
    previous = StoredSecret(sealed=row["previous_secret_sealed"])
    assert open_secret(KEYS, tenant, first.endpoint.id, previous) == first.secret
    # Copied onto another endpoint, or opened with another master key, a sealed secret is useless.
    with pytest.raises(DecryptionFailed):
        open_secret(KEYS, tenant, second.endpoint.id, previous)
    with pytest.raises(DecryptionFailed):
        open_secret(KeyRing(new_key()), tenant, first.endpoint.id, previous)


async def test_a_plaintext_secret_from_before_sealing_keeps_signing_and_is_sealed_in_place(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    endpoint_id, current, previous = new_id(), new_secret(), new_secret()
    now = utcnow()
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            """INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, secret, previous_secret,
                                          previous_secret_expires_at, created_at, updated_at)
           VALUES ($1, $2, $3, '{*}', $4, $5, $6, $7, $7)""",
            tenant,
            endpoint_id,
            receiver.url,
            current,
            previous,
            now + timedelta(hours=1),
            now,
        )
    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant))

    assert await seal_plaintext_secrets(pool, KEYS) >= 1
    assert current not in await row_text(pool, tenant) and previous not in await row_text(pool, tenant)
    assert await seal_plaintext_secrets(pool, KEYS) == 0  # nothing left: a second pass is a no-op
    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant, count=2))

    assert len(receiver.requests) == 2
    for request in receiver.requests:  # before and after sealing: both secrets sign
        for secret in (current, previous):
            verify(request.body, request.headers["kassa-signature"], secret, now=int(time.time()))
