"""The idempotency purge deletes every record past retention, however many, and keeps the newer ones."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import LedgerService
from kassa.ledger.batcher import Batcher
from kassa.shared.limits import idempotency_purge_batch_max

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_the_purge_deletes_every_expired_record_not_just_one_bounded_pass(pool: Pool, app_pool: Pool) -> None:
    tenant = f"idem-purge-{uuid.uuid4().hex[:8]}"
    expired = idempotency_purge_batch_max + 7  # more than one pass may delete
    await pool.execute(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body, created_at)"
        " SELECT $1, g::text, $3, 201, '\\x7b7d', now() - interval '3 days' FROM generate_series(1, $2) g",
        tenant,
        expired,
        hashlib.sha256(b"old").digest(),
    )
    await pool.execute(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)"
        " VALUES ($1, 'fresh', $2, 201, '\\x7b7d')",
        tenant,
        hashlib.sha256(b"new").digest(),
    )
    ledger = LedgerService(app_pool, Batcher(app_pool))  # the API's role, through its SECURITY DEFINER door
    assert await ledger.purge_idempotency_keys() >= expired
    left = await pool.fetch("SELECT key FROM idempotency_keys WHERE tenant_id = $1", tenant)
    assert [r["key"] for r in left] == ["fresh"]
