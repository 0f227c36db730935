"""Pay-per-view test helpers: a tenant with funded wallets, rights holders and a content.

Wallets are rows of the payments context's `wallets` table with a `wallet:<id>` ledger account
(credit-normal, no overdraft), funded from a `bank` account by plain ledger transfers; the test
creates the table if the payments migration has not (a no-op once it has).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from kassa.ledger import CreateTransfer, Job
from kassa.ledger.adapters.engine import run_batch
from kassa.payments.domain.content import Access, Content, RightsHolder
from support.server import create_accounts, fund

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool

WALLETS = """
CREATE TABLE IF NOT EXISTS wallets (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    customer_id text NOT NULL,
    currency    text NOT NULL,
    account_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, customer_id, currency)
)
"""
HOLDERS = (("club", 5000), ("league", 3000), ("broadcaster", 2000))


async def open_ppv_tenant(pool: Pool, funds: dict[str, int], currency: str = "EUR") -> str:
    """A new tenant whose customers (keys of `funds`) each have a wallet holding that amount."""
    tenant = f"ppv-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(WALLETS)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'ppv test')", tenant)
        await conn.execute(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, 'bank', $2, 'debit', true)",
            tenant,
            currency,
        )
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, $3, 'credit', false)",
            [(tenant, f"wallet:w-{c}", currency) for c in funds],
        )
        await conn.executemany(
            "INSERT INTO wallets (tenant_id, id, customer_id, currency, account_id) VALUES ($1, $2, $3, $4, $5)",
            [(tenant, f"w-{c}", c, currency, f"wallet:w-{c}") for c in funds],
        )
    jobs = [
        Job(CreateTransfer(tenant, f"fund-{c}", "bank", f"wallet:w-{c}", currency, amount, False, None, None, {}, b"f"))
        for c, amount in funds.items()
        if amount
    ]
    async with pool.acquire() as conn:
        await run_batch(conn, jobs)
    return tenant


def live_stream(tenant: str, content_id: str = "final", price: int = 199, **changes: object) -> Content:
    """A live stream split among three holders with a 15 % fee (minimum 10)."""
    content = Content(
        tenant_id=tenant,
        id=content_id,
        kind="live_stream",
        title="The final",
        prices={"EUR": price},
        rights_holders=tuple(RightsHolder(c, s) for c, s in HOLDERS),
        platform_fee_bps=1500,
        platform_fee_min=10,
        access=Access("fixed", None, None),
    )
    return replace(content, **changes)  # type: ignore[arg-type]


async def balance(pool: Pool, tenant: str, account_id: str) -> int:
    """The posted balance on the account's normal side."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT normal_balance, debits_posted, credits_posted FROM accounts WHERE tenant_id = $1 AND id = $2",
            tenant,
            account_id,
        )
    assert row is not None, f"no account {account_id}"
    signed: int = row["credits_posted"] - row["debits_posted"]
    return signed if row["normal_balance"] == "credit" else -signed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def http_wallets(client: httpx.AsyncClient, owner: Pool, tenant: str, funds: dict[str, int]) -> None:
    """Wallets for a tenant of a running platform: ledger accounts and funding over HTTP, the
    wallet rows themselves (the payments context's table) written with the owner's pool."""
    bank = {"id": "bank", "currency": "EUR", "normal_balance": "debit", "allow_negative": True}
    await create_accounts(client, [bank])
    await create_accounts(client, [{"id": f"wallet:w-{c}", "currency": "EUR"} for c in funds])
    for customer, amount in funds.items():
        if amount:
            await fund(client, "bank", f"wallet:w-{customer}", amount, "EUR")
    async with owner.acquire() as conn, conn.transaction():
        await conn.execute(WALLETS)
        await conn.executemany(
            "INSERT INTO wallets (tenant_id, id, customer_id, currency, account_id) VALUES ($1, $2, $3, 'EUR', $4)",
            [(tenant, f"w-{c}", c, f"wallet:w-{c}") for c in funds],
        )


CONTENT_BODY = {
    "id": "final",
    "kind": "live_stream",
    "title": "The final",
    "prices": {"EUR": 199},
    "rights_holders": [{"customer_id": c, "share_bps": s} for c, s in HOLDERS],
    "platform_fee_bps": 1500,
    "platform_fee_min": 10,
}
