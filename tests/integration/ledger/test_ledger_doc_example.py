"""The product example in `kassa.ledger`'s docstring runs, verbatim, against a real database.

The example is what a product author copies first; executing the docstring's own text (as
`tests/unit/notifications/test_webhooks_doc_example.py` does for the webhook receiver) keeps its
names and arguments from drifting away from the real API.
"""

from __future__ import annotations

import textwrap
import types
import uuid
from typing import TYPE_CHECKING, Any

import pytest

import kassa.ledger
from kassa.events.outbox import NewEvent
from kassa.ledger import (
    CreateTransaction,
    CreateTransfer,
    InsufficientFunds,
    Job,
    LedgerService,
    NewPosting,
    ProductWrite,
    TransactionApplied,
)
from kassa.ledger.adapters.engine import run_batch
from kassa.store.rls import secure_schema
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

# The example's product table: created here as a migration would create a product's table.
TABLE = """
CREATE TABLE IF NOT EXISTS shop_purchases (
    tenant_id       text NOT NULL,
    id              text NOT NULL,
    transaction_id  text NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
)
"""


def example() -> tuple[str, str]:
    """The docstring's example: the writer class, and the statements that use it."""
    doc = kassa.ledger.__doc__ or ""
    start = doc.index("    class Purchases:")
    code = textwrap.dedent(doc[start : doc.index("\nUnder load", start)])
    writer, statements = code.split("\n\n", 1)
    return writer, statements


async def shop(pool: Pool, buyer_funds: int) -> str:
    tenant = f"doc-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(TABLE)
        if not await conn.fetchval("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'shop_purchases'::regclass"):
            await secure_schema(conn)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'doc example')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, 'EUR', $3, $4)",
            [
                (tenant, "bank", "debit", True),
                *((tenant, a, "credit", False) for a in ("buyer", "platform.fee", "rights.a")),
            ],
        )
    async with pool.acquire() as conn:
        fund = CreateTransfer(tenant, "fund", "bank", "buyer", "EUR", buyer_funds, False, None, None, {}, b"f")
        await run_batch(conn, [Job(fund)])
    return tenant


async def run_example(ledger: LedgerService, order: Any) -> Any:
    """Execute the docstring's code with the names it uses; returns its `applied`."""
    writer, statements = example()
    names: dict[str, Any] = {
        "NewEvent": NewEvent,
        "NewPosting": NewPosting,
        "CreateTransaction": CreateTransaction,
        "ProductWrite": ProductWrite,
        "ledger": ledger,
        "order": order,
        "fingerprint": b"order " + order.id.encode(),
    }
    exec(writer, names)  # noqa: S102 - the docstring's own text, on purpose
    names["PURCHASES"] = names["Purchases"]()
    body = "async def _example():\n" + textwrap.indent(statements, "    ") + "\n    return applied\n"
    exec(body, names)  # noqa: S102
    return await names["_example"]()


async def test_the_docstring_product_example_commits_its_row_with_its_postings_or_neither(
    pool: Pool, ledger: LedgerService
) -> None:
    tenant = await shop(pool, 1_000)
    applied = await run_example(ledger, types.SimpleNamespace(tenant_id=tenant, id="o1"))
    assert isinstance(applied, TransactionApplied) and applied.transaction.id == "purchase-o1"
    assert [(p.credit_account_id, p.amount) for p in applied.transaction.postings] == [
        ("platform.fee", 150),
        ("rights.a", 850),
    ]
    rows = await pool.fetch("SELECT id, transaction_id FROM shop_purchases WHERE tenant_id = $1", tenant)
    assert [(r["id"], r["transaction_id"]) for r in rows] == [("o1", "purchase-o1")]
    event = await pool.fetchval(
        "SELECT aggregate_id FROM outbox WHERE tenant_id = $1 AND type = 'PurchaseCompleted'", tenant
    )
    assert event == "o1"
    # The buyer has spent everything: the example's comment says what happens next.
    with pytest.raises(InsufficientFunds) as refused:
        await run_example(ledger, types.SimpleNamespace(tenant_id=tenant, id="o2"))
    assert refused.value.extra == {"posting_index": 0}
    assert await pool.fetchval("SELECT count(*) FROM shop_purchases WHERE tenant_id = $1", tenant) == 1
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)
