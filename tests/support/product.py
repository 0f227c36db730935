"""A test product for the ledger's product writes: purchases split among a fee and rights holders.

Its rows live in `test_purchases` (created by `ensure_table`, test databases only); its writer
inserts all the purchases of a batch in one statement and emits a `PurchaseCompleted` event per
purchase. A payload with `fail=True` makes the writer raise a database error, as a product
constraint would.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from kassa.events.outbox import NewEvent
from kassa.ledger import CreateTransaction, CreateTransfer, Job, NewPosting, ProductWrite, TransactionApplied
from kassa.ledger.adapters.engine import run_batch
from kassa.store.rls import secure_schema

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.ledger import Applied
    from kassa.store.pool import Conn, Pool

TABLE = """
CREATE TABLE IF NOT EXISTS test_purchases (
    tenant_id       text NOT NULL,
    id              text NOT NULL,
    transaction_id  text NOT NULL,
    amount          bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
)
"""
SPLIT = (("fee", 15), ("artist", 50), ("label", 35))  # percent of the price per payee


@dataclass(frozen=True, slots=True)
class Purchase:
    tenant_id: str
    id: str
    buyer: str
    price: int
    fail: bool = False


class Purchases:
    """The writer: one statement for every purchase of a batch whose postings were applied."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []  # purchase ids per call, to show the writes are set-based

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Purchase, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        self.calls.append([p.id for p, _ in applied])
        if any(p.fail for p, _ in applied):
            raise asyncpg.CheckViolationError("the purchase breaks a product rule")
        rows = [(p.tenant_id, p.id, a.transaction.id, p.price) for p, a in applied if isinstance(a, TransactionApplied)]
        await conn.execute(
            "INSERT INTO test_purchases (tenant_id, id, transaction_id, amount, created_at)"
            " SELECT t, i, x, a, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(t, i, x, a)",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            now,
        )
        return [
            NewEvent(p.tenant_id, "PurchaseCompleted", "purchase", p.id, {"id": p.id, "amount": p.price})
            for p, _ in applied
        ]


async def ensure_table(conn: Conn) -> None:
    """Create the table as a migration would: `kassa migrate` secures every new tenant table
    (row-level security, grants) after applying migrations, so a test table must be secured the
    same way or the RLS tests, which check every tenant table, would find it open."""
    await conn.execute(TABLE)
    secured = await conn.fetchval("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'test_purchases'::regclass")
    if not secured:
        await secure_schema(conn)


async def open_shop(pool: Pool, funds: dict[str, int]) -> str:
    """A new tenant with the payees, a bank, and buyers funded as given; returns its id."""
    tenant = f"shop-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await ensure_table(conn)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'product test')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, 'USD', $3, $4)",
            [(tenant, "bank", "debit", True)]
            + [(tenant, a, "credit", False) for a in ("fee", "artist", "label", *funds)],
        )
    async with pool.acquire() as conn:
        jobs = [
            Job(CreateTransfer(tenant, f"fund-{b}", "bank", b, "USD", amount, False, None, None, {}, b"x"))
            for b, amount in funds.items()
        ]
        await run_batch(conn, jobs)
    return tenant


def purchase_command(purchase: Purchase) -> CreateTransaction:
    shares = [purchase.price * pct // 100 for _, pct in SPLIT]
    shares[0] += purchase.price - sum(shares)
    postings = tuple(
        NewPosting(purchase.buyer, payee, share, "USD")
        for (payee, _), share in zip(SPLIT, shares, strict=True)
        if share
    )
    fingerprint = hashlib.sha256(repr(purchase).encode()).digest()
    return CreateTransaction(
        purchase.tenant_id, f"purchase-{purchase.id}", postings, False, None, None, {}, fingerprint
    )


def purchase_write(writer: Purchases, purchase: Purchase) -> ProductWrite[Purchase]:
    return ProductWrite(writer, purchase)
