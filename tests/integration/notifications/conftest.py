"""Fixtures for notifications integration tests: a fresh tenant per test (the receiver fixture
comes from tests/support/receiver.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from kassa.shared.ids import new_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool


async def make_tenant(pool: Pool) -> str:
    tenant_id = "t_" + new_id().replace("-", "")[:30]
    await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant_id, "notifications test")
    return tenant_id


async def cancel_pending(pool: Pool, tenant_id: str) -> None:
    # Delivery workers claim across tenants: leave nothing due that a later test would send.
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'canceled', completed_at = now()"
        " WHERE tenant_id = $1 AND status = 'pending'",
        tenant_id,
    )


@pytest.fixture
async def tenant(pool: Pool) -> AsyncIterator[str]:
    tenant_id = await make_tenant(pool)
    yield tenant_id
    await cancel_pending(pool, tenant_id)


@pytest.fixture
async def other_tenant(pool: Pool) -> AsyncIterator[str]:
    tenant_id = await make_tenant(pool)
    yield tenant_id
    await cancel_pending(pool, tenant_id)
