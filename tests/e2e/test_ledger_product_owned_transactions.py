"""The generic ledger routes cannot settle a pending transaction a product owns (a top-up waiting for
its provider, a withdrawal's hold, a purchase held for review): post, void and a create naming its
id are 409 transaction_managed_by_product and change nothing, after which the product's own flow
still settles it exactly once; and no client can send the reserved metadata key that marks them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from kassa.store.migrate import load_migrations
from kassa.store.tenancy import tenant_transaction
from support.compliance import verify_customer
from support.ledger import assert_tenant_ledger_consistent
from support.ppv import HOLDERS, http_wallets
from support.sandbox import Sandbox
from support.server import get_ok, new_tenant, tenant_id_of, until_ok

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
WAIT_S = 30.0
FUNDS = 30_000
CARD = "4242424242424242"
BANK = "000123456789"
REVIEW_LARGE = [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "review"}]


@dataclass
class Shop:
    client: httpx.AsyncClient
    tenant: str
    db: Pool
    wallet: dict[str, Any]
    sandbox: Sandbox

    async def get(self, path: str) -> dict[str, Any]:
        return await get_ok(self.client, path)

    async def until(self, path: str, **expected: Any) -> dict[str, Any]:
        return await until_ok(self.client, path, WAIT_S, **expected)

    async def balances(self) -> dict[str, int]:
        found: dict[str, int] = (await self.get(f"/v1/wallets/{self.wallet['id']}"))["balances"]
        return found

    async def state(self, item_path: str, transaction_id: str) -> dict[str, Any]:
        """What a refused generic call must leave alone: the product's row as the API shows it,
        the transaction, the wallet, the transaction's journal entries and the tenant's events."""
        async with tenant_transaction(self.db, self.tenant) as conn:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM entries WHERE tenant_id = $1 AND transaction_id = $2) AS entries,"
                " (SELECT count(*) FROM outbox WHERE tenant_id = $1) AS events",
                self.tenant,
                transaction_id,
            )
        assert counts is not None
        return {
            "item": await self.get(item_path),
            "transaction": await self.get(f"/v1/transactions/{transaction_id}"),
            "balances": await self.balances(),
            **dict(counts),
        }

    async def try_to_settle(self, transaction_id: str, product: str) -> None:
        """Every way the generic ledger API could reach the product's transaction: refused."""
        posted = await self.client.post(f"/v1/transactions/{transaction_id}/post", json={})
        partly = await self.client.post(f"/v1/transactions/{transaction_id}/post", json={"amounts": [1]})
        keyed = await self.client.post(
            f"/v1/transactions/{transaction_id}/post", json={}, headers={"Idempotency-Key": f"steal-{transaction_id}"}
        )
        voided = await self.client.post(f"/v1/transactions/{transaction_id}/void")
        transaction = await self.get(f"/v1/transactions/{transaction_id}")
        postings = [
            {k: p[k] for k in ("debit_account_id", "credit_account_id", "amount", "currency")}
            for p in transaction["postings"]
        ]
        # The same id and postings as the product's: neither a replay of it nor a new one.
        created = await self.client.post(
            "/v1/transactions", json={"id": transaction_id, "postings": postings, "pending": True, "timeout_s": 60}
        )
        for response in (posted, partly, keyed, voided, created):
            assert (response.status_code, response.json()["code"]) == (409, "transaction_managed_by_product"), (
                response.text
            )
            assert response.json()["product"] == product
        # A product's transaction is not a transfer: the transfer routes do not find it.
        for action in ("post", "void"):
            transfer = await self.client.post(f"/v1/transfers/{transaction_id}/{action}", json={})
            assert (transfer.status_code, transfer.json()["code"]) == (404, "transfer_not_found"), transfer.text


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[Shop]:
    """A tenant whose customer `fan` (KYC tier 1) has an EUR wallet with FUNDS, a sandbox that
    answers only when told to (a provider that delays), and a content `big` priced 6,000."""
    assert platform.sandbox_url is not None, "kassa up starts the sandbox provider"
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as client:
        await http_wallets(client, {"fan": FUNDS})
        (wallet,) = (await client.get("/v1/customers/fan/wallets")).json()["data"]
        await verify_customer(platform_db, tenant, "fan", tier=1)
        content = {
            "id": "big",
            "kind": "video",
            "title": "big",
            "prices": {"EUR": 6_000},
            "rights_holders": [{"customer_id": c, "share_bps": s} for c, s in HOLDERS],
            "platform_fee_bps": 1000,
        }
        assert (await client.post("/v1/content", json=content)).status_code == 201
        sandbox = Sandbox(platform.sandbox_url)
        await sandbox.behave(tenant, manual=True)
        yield Shop(client, tenant, platform_db, wallet, sandbox)
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_pending_top_up_cannot_be_posted_or_voided_through_the_ledger_api(shop: Shop) -> None:
    body = {"wallet_id": shop.wallet["id"], "amount": 1_500, "currency": "EUR"}
    created = await shop.client.post("/v1/topups", json=body | {"payment_method": {"type": "card", "number": CARD}})
    assert created.status_code == 201, created.text
    topup = created.json()
    assert topup["status"] == "pending"
    transaction_id = topup["transaction_id"]
    before = await shop.state(f"/v1/topups/{topup['id']}", transaction_id)
    assert before["transaction"]["metadata"]["kassa_product"] == "topup"  # readable: the tenant's ledger
    assert before["balances"] == {"posted": FUNDS, "pending_debits": 0, "pending_credits": 1_500, "available": FUNDS}
    await shop.try_to_settle(transaction_id, "topup")
    assert await shop.state(f"/v1/topups/{topup['id']}", transaction_id) == before
    # The provider's success callback still posts it, once.
    await shop.sandbox.helper("charges", topup["id"], "succeed")
    done = await shop.until(f"/v1/topups/{topup['id']}", status="succeeded")
    assert done["failure_code"] is None
    assert await shop.balances() == {
        "posted": FUNDS + 1_500,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": FUNDS + 1_500,
    }
    transaction = await shop.get(f"/v1/transactions/{transaction_id}")
    assert (transaction["status"], [p["posted_amount"] for p in transaction["postings"]]) == ("posted", [1_500])
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        kinds = await conn.fetch(
            "SELECT kind, count(*) AS n FROM entries WHERE tenant_id = $1 AND transaction_id = $2 GROUP BY kind",
            shop.tenant,
            transaction_id,
        )
    assert {r["kind"]: r["n"] for r in kinds} == {"pending": 2, "posted": 2}


async def test_a_withdrawals_hold_cannot_be_released_or_posted_through_the_ledger_api(shop: Shop) -> None:
    body = {"wallet_id": shop.wallet["id"], "amount": 2_000, "destination": {"account_number": BANK}}
    created = await shop.client.post("/v1/withdrawals", json=body)
    assert created.status_code == 201, created.text
    withdrawal = created.json()
    assert withdrawal["status"] == "pending"
    transaction_id = withdrawal["transaction_id"]
    path = f"/v1/withdrawals/{withdrawal['id']}"
    before = await shop.state(path, transaction_id)
    assert before["balances"]["available"] == FUNDS - 2_000  # held while the payout is in flight
    await shop.try_to_settle(transaction_id, "withdrawal")
    assert await shop.state(path, transaction_id) == before
    # The payout's outcome still settles it, once.
    await shop.sandbox.helper("payouts", withdrawal["id"], "post")
    await shop.until(path, status="succeeded")
    assert await shop.balances() == {
        "posted": FUNDS - 2_000,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": FUNDS - 2_000,
    }
    assert (await shop.get(f"/v1/transactions/{transaction_id}"))["status"] == "posted"


async def test_a_purchase_held_for_review_cannot_be_settled_through_the_ledger_api(shop: Shop) -> None:
    rules = await shop.client.post("/v1/compliance/rules", json={"reason": "test", "rules": REVIEW_LARGE})
    assert rules.status_code == 201, rules.text
    created = await shop.client.post(
        "/v1/purchases", json={"customer_id": "fan", "content_id": "big", "currency": "EUR"}
    )
    assert created.status_code == 201, created.text
    held = created.json()
    assert held["status"] == "pending_review"
    transaction_id = held["transaction_id"]
    path = f"/v1/purchases/{held['id']}"
    before = await shop.state(path, transaction_id)
    assert before["transaction"]["metadata"]["kassa_product"] == "purchase"
    await shop.try_to_settle(transaction_id, "purchase")
    assert await shop.state(path, transaction_id) == before
    assert (await shop.get("/v1/entitlements/check?customer_id=fan&content_id=big"))["allowed"] is False
    review = await shop.get(f"/v1/reviews/{held['review_id']}")
    assert review["status"] == "open"
    # The reviewer's approval still posts it, once.
    approved = await shop.client.post(f"/v1/reviews/{held['review_id']}/approve", json={"reason": "fine"})
    assert approved.status_code == 200, approved.text
    done = await shop.get(path)
    assert done["status"] == "completed" and done["entitlement_id"] is not None
    assert (await shop.balances())["posted"] == FUNDS - 6_000
    assert (await shop.get("/v1/entitlements/check?customer_id=fan&content_id=big"))["allowed"] is True


async def test_client_metadata_with_the_reserved_product_key_is_refused_and_nothing_is_written(shop: Shop) -> None:
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        counted = "SELECT (SELECT count(*) FROM transactions WHERE tenant_id = $1) + (SELECT count(*) FROM transfers"
        counted += " WHERE tenant_id = $1) + (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)"
        before = await conn.fetchval(counted, shop.tenant)
    wallet, forged = shop.wallet["account_id"], {"kassa_product": "topup"}
    posting = {"debit_account_id": "bank", "credit_account_id": wallet, "amount": 100, "currency": "EUR"}
    attempts = [
        ("/v1/transactions", {"id": "forged-tx", "postings": [posting], "pending": True, "metadata": forged}),
        ("/v1/transactions", {"id": "forged-tx", "postings": [posting], "metadata": forged | {"note": "x"}}),
        ("/v1/transfers", {"id": "forged-tr", **posting, "metadata": forged}),
        ("/v1/adjustments", {"id": "forged-adj", "postings": [posting], "reason": "x", "metadata": forged}),
    ]
    for path, body in attempts:
        refused = await shop.client.post(path, json=body, headers={"Idempotency-Key": f"forged-{path}"})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request"), refused.text
        assert "kassa_product" in refused.json()["detail"]
    assert (await shop.client.get("/v1/transactions/forged-tx")).status_code == 404
    assert (await shop.client.get("/v1/transfers/forged-tr")).status_code == 404
    assert (await shop.balances())["posted"] == FUNDS
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        assert await conn.fetchval(counted, shop.tenant) == before


async def test_a_client_cannot_take_the_id_of_a_withdrawals_future_return_first(shop: Shop) -> None:
    # A return's transaction id is known once the withdrawal exists: taken first by a client, the
    # provider's return could never credit the wallet back.
    body = {"wallet_id": shop.wallet["id"], "amount": 2_500, "destination": {"account_number": BANK}}
    withdrawal = (await shop.client.post("/v1/withdrawals", json=body)).json()
    path = f"/v1/withdrawals/{withdrawal['id']}"
    await shop.sandbox.helper("payouts", withdrawal["id"], "post")
    await shop.until(path, status="succeeded")
    posting = {
        "debit_account_id": "bank",
        "credit_account_id": shop.wallet["account_id"],
        "amount": 1,
        "currency": "EUR",
    }
    return_id = f"withdrawal-return:{withdrawal['id']}"
    # Every product's id namespace is reserved, not only the one whose ids are predictable.
    for taken in (return_id, "withdrawal:wd_x", "topup:top_x", "purchase:x", "refund:x"):
        squatted = await shop.client.post("/v1/transactions", json={"id": taken, "postings": [posting]})
        assert (squatted.status_code, squatted.json()["code"]) == (409, "transaction_managed_by_product"), squatted.text
    assert (await shop.client.get(f"/v1/transactions/{return_id}")).status_code == 404
    assert (await shop.balances())["posted"] == FUNDS - 2_500
    await shop.sandbox.helper("payouts", withdrawal["id"], "return")
    returned = await shop.until(path, status="returned")
    assert returned["return_transaction_id"] == return_id
    assert (await shop.balances())["posted"] == FUNDS
    transaction = await shop.get(f"/v1/transactions/{return_id}")
    assert (transaction["status"], transaction["metadata"]["kassa_product"]) == ("posted", "withdrawal")


async def test_migration_0065_marks_the_product_transactions_that_are_still_pending(shop: Shop) -> None:
    # Made before the owner existed: the same top-ups without the key, one pending, one settled.
    card = {"type": "card", "number": CARD}
    body = {"wallet_id": shop.wallet["id"], "currency": "EUR", "payment_method": card}
    pending = (await shop.client.post("/v1/topups", json=body | {"amount": 300})).json()
    settled = (await shop.client.post("/v1/topups", json=body | {"amount": 400})).json()
    await shop.sandbox.helper("charges", settled["id"], "succeed")
    await shop.until(f"/v1/topups/{settled['id']}", status="succeeded")
    ids = [pending["transaction_id"], settled["transaction_id"]]
    (migration,) = [m for m in load_migrations() if m.version == 65]
    marked = "SELECT id, metadata ? 'kassa_product' AS marked FROM transactions WHERE tenant_id = $1 AND id = ANY($2)"
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        await conn.execute(
            "UPDATE transactions SET metadata = metadata - 'kassa_product' WHERE tenant_id = $1 AND id = ANY($2)",
            shop.tenant,
            ids,
        )
        await conn.execute(migration.sql)
        found = {r["id"]: r["marked"] for r in await conn.fetch(marked, shop.tenant, ids)}
    assert found == {pending["transaction_id"]: True, settled["transaction_id"]: False}
    refused = await shop.client.post(f"/v1/transactions/{pending['transaction_id']}/post", json={})
    assert (refused.status_code, refused.json()["code"]) == (409, "transaction_managed_by_product"), refused.text
    await shop.sandbox.helper("charges", pending["id"], "succeed")
    await shop.until(f"/v1/topups/{pending['id']}", status="succeeded")
    assert (await shop.balances())["posted"] == FUNDS + 700
