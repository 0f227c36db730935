"""Pay-per-view test helpers: a tenant with customers, funded wallets, rights holders and a content.

In-process (`open_ppv_tenant`): the buyers and the holders are real customers (identity's
service, personal data sealed), the wallets rows of payments' `wallets` table with a
`wallet:w-<customer>` ledger account, funded from a `bank` account by ledger transfers. Over
HTTP (`http_wallets`): customers and wallets through the API, funded by transfers.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kassa.identity.customers import CustomerService
from kassa.identity.domain.customers import Customer
from kassa.ledger import CreateTransfer, Job
from kassa.ledger.adapters.engine import run_batch
from kassa.payments.accounts import PlatformAccounts
from kassa.payments.domain.content import Access, Content, RightsHolder
from kassa.payments.entitlement_cache import EntitlementCache
from kassa.payments.ppv import PayPerView
from kassa.shared.crypto import KeyRing, new_key
from support.server import create_accounts, fund

if TYPE_CHECKING:
    import httpx

    from kassa.identity.domain.customers import CustomerType
    from kassa.ledger import LedgerService
    from kassa.payments.entitlement_cache import Cache
    from kassa.store.pool import Pool

HOLDERS = (("club", 5000), ("league", 3000), ("broadcaster", 2000))
KEYS = KeyRing(new_key())  # the master key of these tests' customers
CREATE_CONCURRENCY_MAX = 32


class CountingPool:
    """A pool that counts the connections taken from it (each database read takes one)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self._pool.acquire()


def ppv_service(pool: Pool, ledger: LedgerService, cache: Cache | None = None) -> PayPerView:
    return PayPerView(pool, ledger, CustomerService(pool, KEYS), PlatformAccounts(ledger), cache or EntitlementCache())


async def _customers(pool: Pool, tenant: str, ids: list[str], kind: CustomerType) -> None:
    service = CustomerService(pool, KEYS)
    limit = asyncio.Semaphore(CREATE_CONCURRENCY_MAX)

    async def create(customer_id: str) -> None:
        async with limit:
            customer = Customer(tenant, customer_id, kind, f"Name of {customer_id}", None, "DE", {})
            await service.create_customer(customer)

    await asyncio.gather(*(create(c) for c in ids))


async def open_ppv_tenant(pool: Pool, funds: dict[str, int], currency: str = "EUR") -> str:
    """A new tenant whose customers (keys of `funds`) each have a wallet holding that amount,
    and whose rights holders (HOLDERS) are business customers."""
    tenant = f"ppv-{uuid.uuid4().hex[:12]}"
    await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, 'ppv test')", tenant)
    await _customers(pool, tenant, list(funds), "person")
    await _customers(pool, tenant, [h for h, _ in HOLDERS], "business")
    async with pool.acquire() as conn, conn.transaction():
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
    return replace(content, **changes)  # type: ignore[arg-type]  # any field, as the caller names it


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


async def http_wallets(client: httpx.AsyncClient, funds: dict[str, int]) -> dict[str, str]:
    """Customers with EUR wallets over HTTP, each funded with its amount from a `bank` account,
    and the rights holders (HOLDERS) as business customers; returns each wallet's account id."""
    bank = {"id": "bank", "currency": "EUR", "normal_balance": "debit", "allow_negative": True}
    await create_accounts(client, [bank])
    limit = asyncio.Semaphore(CREATE_CONCURRENCY_MAX)

    async def customer(customer_id: str, kind: str) -> str | None:
        async with limit:
            body = {"id": customer_id, "type": kind, "name": f"Name of {customer_id}", "country": "DE"}
            created = await client.post("/v1/customers", json=body)
            assert created.status_code == 201, created.text
            if kind == "business":
                return None
            wallet = await client.post(f"/v1/customers/{customer_id}/wallets", json={"currency": "EUR"})
            assert wallet.status_code == 201, wallet.text
            account: str = wallet.json()["account_id"]
            if funds[customer_id]:
                await fund(client, "bank", account, funds[customer_id], "EUR")
            return account

    await asyncio.gather(*(customer(h, "business") for h, _ in HOLDERS))
    accounts = await asyncio.gather(*(customer(c, "person") for c in funds))
    return {c: a for c, a in zip(funds, accounts, strict=True) if a is not None}


async def wallet_balance(client: httpx.AsyncClient, customer_id: str) -> int:
    """The posted balance of the customer's EUR wallet."""
    response = await client.get(f"/v1/customers/{customer_id}/wallets")
    assert response.status_code == 200, response.text
    (wallet,) = [w for w in response.json()["data"] if w["currency"] == "EUR"]
    posted: int = wallet["balances"]["posted"]
    return posted


CONTENT_BODY = {
    "id": "final",
    "kind": "live_stream",
    "title": "The final",
    "prices": {"EUR": 199},
    "rights_holders": [{"customer_id": c, "share_bps": s} for c, s in HOLDERS],
    "platform_fee_bps": 1500,
    "platform_fee_min": 10,
}
