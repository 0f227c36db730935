"""Compliance on the real payment routes over HTTP: top-ups, withdrawals and purchases are refused
when the customer's capability is off, over a limit or blocked by a rule (nothing changes), and
held for review until a reviewer approves (the product completes) or rejects (it fails, the money
is released). Two concurrent purchases that only fit the day limit one at a time: exactly one
passes, with the limit's counter row proven to be what serializes them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from kassa.store.tenancy import scope, tenant_transaction
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
CARD = "4242424242424242"
BANK = "000123456789"
REVIEW_LARGE = [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "review"}]
BLOCK_LARGE = [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "block"}]
PRICES = {"big": 6_000, "over": 10_001, "a": 9_000, "b": 6_000, "c": 6_000}
# Test connections waiting (directly or through others) on the backend that holds a lock.
WAITING_BEHIND = """
WITH RECURSIVE behind(pid) AS (
    SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))
    UNION SELECT a.pid FROM pg_stat_activity a JOIN behind b ON b.pid = ANY(pg_blocking_pids(a.pid))
)
SELECT count(*) FROM behind
"""


@dataclass
class Shop:
    client: httpx.AsyncClient
    tenant: str
    db: Pool
    wallet: dict[str, Any]
    sandbox: Sandbox

    async def rules(self, rules: list[dict[str, Any]]) -> None:
        response = await self.client.post("/v1/compliance/rules", json={"reason": "test", "rules": rules})
        assert response.status_code == 201, response.text

    async def topup(self, amount: int) -> httpx.Response:
        card = {"type": "card", "number": CARD}
        body = {"wallet_id": self.wallet["id"], "amount": amount, "currency": "EUR", "payment_method": card}
        return await self.client.post("/v1/topups", json=body)

    async def withdraw(self, amount: int) -> httpx.Response:
        body = {"wallet_id": self.wallet["id"], "amount": amount, "destination": {"account_number": BANK}}
        return await self.client.post("/v1/withdrawals", json=body)

    async def buy(self, content: str) -> httpx.Response:
        body = {"customer_id": "fan", "content_id": content, "currency": "EUR"}
        return await self.client.post("/v1/purchases", json=body)

    async def get(self, path: str) -> dict[str, Any]:
        return await get_ok(self.client, path)

    async def balances(self) -> dict[str, int]:
        found: dict[str, int] = (await self.get(f"/v1/wallets/{self.wallet['id']}"))["balances"]
        return found

    async def until(self, path: str, **expected: Any) -> dict[str, Any]:
        return await until_ok(self.client, path, WAIT_S, **expected)

    async def decide(self, review_id: str, action: str) -> dict[str, Any]:
        response = await self.client.post(f"/v1/reviews/{review_id}/{action}", json={"reason": f"test {action}"})
        assert response.status_code == 200, response.text
        decided: dict[str, Any] = response.json()
        return decided

    async def state(self) -> dict[str, Any]:
        """Everything a refused payment must leave alone."""
        async with tenant_transaction(self.db, self.tenant) as conn:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM topups WHERE tenant_id = $1) AS topups,"
                " (SELECT count(*) FROM withdrawals WHERE tenant_id = $1) AS withdrawals,"
                " (SELECT count(*) FROM purchases WHERE tenant_id = $1) AS purchases,"
                " (SELECT count(*) FROM held_purchases WHERE tenant_id = $1) AS held,"
                " (SELECT count(*) FROM compliance_reviews WHERE tenant_id = $1) AS reviews,"
                " (SELECT count(*) FROM transactions WHERE tenant_id = $1) AS transactions,"
                " (SELECT coalesce(sum(amount_used), 0) FROM compliance_limit_usage WHERE tenant_id = $1) AS used",
                self.tenant,
            )
        assert counts is not None
        return {**dict(counts), "balances": await self.balances()}


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[Shop]:
    """A tenant whose customer `fan` (KYC tier 0) has an EUR wallet with 30,000, and contents
    priced as PRICES (three rights holders and a platform fee)."""
    assert platform.sandbox_url is not None
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as client:
        await http_wallets(client, {"fan": 30_000})
        (wallet,) = (await client.get("/v1/customers/fan/wallets")).json()["data"]
        for content, price in PRICES.items():
            body = {
                "id": content,
                "kind": "video",
                "title": content,
                "prices": {"EUR": price},
                "rights_holders": [{"customer_id": c, "share_bps": s} for c, s in HOLDERS],
                "platform_fee_bps": 1000,
            }
            assert (await client.post("/v1/content", json=body)).status_code == 201
        yield Shop(client, tenant, platform_db, wallet, Sandbox(platform.sandbox_url))
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_disabled_capability_refuses_each_route_and_changes_nothing(shop: Shop) -> None:
    before = await shop.state()
    refused = _problem(await shop.withdraw(100), 422, "capability_disabled")  # tier 0: no withdrawals
    assert (refused["capability"], refused["capability_status"], refused["reason"]) == (
        "withdrawals",
        "disabled",
        "needs tier 1",
    )
    # A customer blocked by compliance (a sanctions hit) has every capability disabled; with a
    # rule set that does not block it, the capability is what refuses.
    await shop.rules([])
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        await conn.execute(
            "UPDATE compliance_customers SET blocked = true, blocked_reason = 'test' WHERE tenant_id = $1"
            " AND customer_id = 'fan'",
            shop.tenant,
        )
    assert _problem(await shop.topup(100), 422, "capability_disabled")["capability"] == "wallet.topup"
    assert _problem(await shop.buy("b"), 422, "capability_disabled")["capability"] == "purchases"
    assert await shop.state() == before


async def test_a_limit_refuses_each_route_naming_it_and_changes_nothing(shop: Shop) -> None:
    before = await shop.state()
    top = _problem(await shop.topup(10_001), 422, "limit_exceeded")
    assert top["limit"] == "tier0.incoming.transaction.amount"
    assert _problem(await shop.buy("over"), 422, "limit_exceeded")["limit"] == "tier0.outgoing.transaction.amount"
    await verify_customer(shop.db, shop.tenant, "fan", tier=1)
    out = _problem(await shop.withdraw(100_001), 422, "limit_exceeded")
    assert out["limit"] == "tier1.outgoing.transaction.amount"
    assert await shop.state() == before
    # The day limit is enforced in the ledger's transaction: tier 1 allows 500,000 out a day.
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        await conn.execute("UPDATE compliance_customers SET tier = 0 WHERE tenant_id = $1", shop.tenant)
    assert (await shop.buy("a")).status_code == 201  # 9,000 of tier 0's 20,000 a day
    assert (await shop.buy("b")).status_code == 201  # 15,000
    after_two = await shop.state()
    assert _problem(await shop.buy("c"), 422, "limit_exceeded")["limit"] == "tier0.outgoing.day.amount"
    assert await shop.state() == after_two


async def test_a_blocking_rule_refuses_each_route_and_changes_nothing(shop: Shop) -> None:
    await verify_customer(shop.db, shop.tenant, "fan", tier=1)
    await shop.rules(BLOCK_LARGE)
    before = await shop.state()
    for response in (await shop.topup(6_000), await shop.withdraw(6_000), await shop.buy("big")):
        problem = _problem(response, 422, "blocked_by_policy")
        assert problem["rule_ids"] == ["large"]
    assert await shop.state() == before
    assert (await shop.buy("a")).status_code == 422  # 9,000 is large too
    assert (await shop.withdraw(4_000)).status_code == 201  # below the rule's amount: allowed


async def test_a_top_up_held_for_review_is_credited_only_after_both_the_charge_and_the_approval(shop: Shop) -> None:
    await shop.rules(REVIEW_LARGE)
    await shop.sandbox.behave(shop.tenant, manual=True)
    start = (await shop.balances())["posted"]
    # Charged first, approved second.
    first = (await shop.topup(6_000)).json()
    assert (first["status"], first["review_status"]) == ("pending", "open")
    review = await shop.get(f"/v1/reviews/{first['review_id']}")
    assert (review["status"], review["amount"], review["direction"]) == ("open", 6_000, "incoming")
    await shop.sandbox.helper("charges", first["id"], "succeed")
    charged = await shop.until(f"/v1/topups/{first['id']}", charged=True)
    assert charged["status"] == "pending"
    assert (await shop.balances())["posted"] == start  # charged, not yet approved: not credited
    await shop.decide(first["review_id"], "approve")
    done = await shop.get(f"/v1/topups/{first['id']}")
    assert (done["status"], done["review_status"]) == ("succeeded", "approved")
    assert (await shop.balances())["posted"] == start + 6_000
    # Approved first, charged second.
    second = (await shop.topup(7_000)).json()
    await shop.decide(second["review_id"], "approve")
    approved = await shop.get(f"/v1/topups/{second['id']}")
    assert (approved["status"], approved["review_status"], approved["charged"]) == ("pending", "approved", False)
    assert (await shop.balances())["posted"] == start + 6_000
    await shop.sandbox.helper("charges", second["id"], "succeed")
    await shop.until(f"/v1/topups/{second['id']}", status="succeeded")
    assert (await shop.balances())["posted"] == start + 13_000
    assert (await shop.get(f"/v1/reviews/{second['review_id']}"))["status"] == "approved"


async def test_a_top_up_rejected_in_review_fails_and_credits_nothing(shop: Shop) -> None:
    await shop.rules(REVIEW_LARGE)
    await shop.sandbox.behave(shop.tenant, manual=True)
    start = await shop.balances()
    topup = (await shop.topup(6_000)).json()
    decided = await shop.decide(topup["review_id"], "reject")
    assert decided["status"] == "rejected"
    failed = await shop.get(f"/v1/topups/{topup['id']}")
    assert (failed["status"], failed["failure_code"], failed["review_status"]) == (
        "failed",
        "review_rejected",
        "rejected",
    )
    # The provider's charge arriving after the rejection is an exception for an operator.
    await shop.sandbox.helper("charges", topup["id"], "succeed")
    async with asyncio.timeout(WAIT_S):
        while not (await shop.get("/v1/payment-exceptions"))["data"]:
            await asyncio.sleep(0.05)
    exceptions = (await shop.get("/v1/payment-exceptions"))["data"]
    assert [(e["object_id"], e["event_type"], e["status_at_arrival"]) for e in exceptions] == [
        (topup["id"], "charge.succeeded", "failed")
    ]
    assert await shop.balances() == start
    # Charged first, rejected second: the exception is recorded with the rejection.
    charged = (await shop.topup(7_000)).json()
    await shop.sandbox.helper("charges", charged["id"], "succeed")
    await shop.until(f"/v1/topups/{charged['id']}", charged=True)
    await shop.decide(charged["review_id"], "reject")
    failed = await shop.get(f"/v1/topups/{charged['id']}")
    assert (failed["status"], failed["failure_code"], failed["charged"]) == ("failed", "review_rejected", True)
    newest = (await shop.get("/v1/payment-exceptions"))["data"][0]
    assert (newest["object_id"], newest["event_id"], newest["event_type"], newest["failure_code"]) == (
        charged["id"],
        charged["review_id"],
        "review.rejected",
        "review_rejected",
    )
    assert await shop.balances() == start


async def test_a_withdrawal_held_for_review_is_paid_out_only_after_approval(shop: Shop) -> None:
    await verify_customer(shop.db, shop.tenant, "fan", tier=1)
    await shop.rules(REVIEW_LARGE)
    start = await shop.balances()
    withdrawal = (await shop.withdraw(6_000)).json()
    assert (withdrawal["status"], withdrawal["review_status"]) == ("pending", "open")
    held = await shop.balances()
    assert (held["posted"], held["available"]) == (start["posted"], start["available"] - 6_000)
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        row = await conn.fetchrow(
            "SELECT provider_object_id, destination_sealed FROM withdrawals WHERE tenant_id = $1 AND id = $2",
            shop.tenant,
            withdrawal["id"],
        )
    assert row is not None
    assert row["provider_object_id"] is None  # no payout requested while held
    assert row["destination_sealed"] is not None and BANK.encode() not in row["destination_sealed"]
    await shop.decide(withdrawal["review_id"], "approve")
    done = await shop.until(f"/v1/withdrawals/{withdrawal['id']}", status="succeeded")
    assert done["review_status"] == "approved"
    after = await shop.balances()
    assert (after["posted"], after["available"]) == (start["posted"] - 6_000, start["available"] - 6_000)
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        sealed = await conn.fetchval(
            "SELECT destination_sealed FROM withdrawals WHERE tenant_id = $1 AND id = $2", shop.tenant, withdrawal["id"]
        )
    assert sealed is None


async def test_a_withdrawal_rejected_in_review_releases_the_money_and_pays_nothing(shop: Shop) -> None:
    await verify_customer(shop.db, shop.tenant, "fan", tier=1)
    await shop.rules(REVIEW_LARGE)
    start = await shop.balances()
    withdrawal = (await shop.withdraw(6_000)).json()
    await shop.decide(withdrawal["review_id"], "reject")
    failed = await shop.get(f"/v1/withdrawals/{withdrawal['id']}")
    assert (failed["status"], failed["failure_code"], failed["review_status"]) == (
        "failed",
        "review_rejected",
        "rejected",
    )
    assert await shop.balances() == start
    assert not [d for d in await shop.sandbox.deliveries(shop.tenant) if d["reference"] == withdrawal["id"]]
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        row = await conn.fetchrow(
            "SELECT provider_object_id, destination_sealed FROM withdrawals WHERE tenant_id = $1 AND id = $2",
            shop.tenant,
            withdrawal["id"],
        )
    assert row is not None
    assert (row["provider_object_id"], row["destination_sealed"]) == (None, None)


async def _check(shop: Shop, content: str) -> dict[str, Any]:
    return await shop.get(f"/v1/entitlements/check?customer_id=fan&content_id={content}")


async def test_a_purchase_held_for_review_grants_access_only_after_approval(shop: Shop) -> None:
    await shop.rules(REVIEW_LARGE)
    start = await shop.balances()
    created = await shop.buy("big")
    assert created.status_code == 201, created.text
    held = created.json()
    assert (held["status"], held["entitlement_id"]) == ("pending_review", None)
    assert held["review_id"] is not None
    assert (await shop.get(f"/v1/purchases/{held['id']}"))["status"] == "pending_review"
    assert (await _check(shop, "big"))["allowed"] is False
    balances = await shop.balances()
    assert (balances["posted"], balances["available"]) == (start["posted"], start["available"] - 6_000)
    review = await shop.get(f"/v1/reviews/{held['review_id']}")
    assert (review["direction"], review["amount"], review["status"]) == ("outgoing", 6_000, "open")
    await shop.decide(held["review_id"], "approve")
    done = await shop.get(f"/v1/purchases/{held['id']}")
    assert (done["status"], done["price"]) == ("completed", 6_000)
    assert done["entitlement_id"] is not None
    assert sum(leg["amount"] for leg in done["legs"]) == 6_000
    assert (await _check(shop, "big"))["allowed"] is True
    assert (await shop.balances())["posted"] == start["posted"] - 6_000
    (fee,) = [leg for leg in done["legs"] if leg["role"] == "platform_fee"]
    assert fee["amount"] == 600
    assert (await shop.get(f"/v1/accounts/{fee['account_id']}"))["balances"]["posted"] == 600


async def test_a_purchase_rejected_in_review_fails_and_releases_the_money(shop: Shop) -> None:
    await shop.rules(REVIEW_LARGE)
    start = await shop.balances()
    held = (await shop.buy("big")).json()
    await shop.decide(held["review_id"], "reject")
    failed = await shop.get(f"/v1/purchases/{held['id']}")
    assert (failed["status"], failed["failure_code"], failed["entitlement_id"]) == ("failed", "review_rejected", None)
    assert (await _check(shop, "big"))["allowed"] is False
    assert await shop.balances() == start
    listed = await shop.get("/v1/purchases?customer_id=fan")
    assert listed["data"] == []


async def test_two_concurrent_purchases_that_only_fit_the_day_limit_one_at_a_time_cannot_both_pass(
    shop: Shop,
) -> None:
    # Tier 0 allows 20,000 out a day; after 9,000, two purchases of 6,000 fit only one at a time.
    assert (await shop.buy("a")).status_code == 201
    async with shop.db.acquire() as blocker, blocker.transaction():
        await scope(blocker, [shop.tenant])
        locked = await blocker.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM compliance_limit_usage WHERE tenant_id = $1 AND period = 'day'"
            " FOR UPDATE) AS held",
            shop.tenant,
        )
        assert locked == 1
        blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")
        racing = [asyncio.create_task(shop.buy(c)) for c in ("b", "c")]
        # Past their checks and inside the ledger's transaction, waiting for the counter row.
        async with asyncio.timeout(WAIT_S):
            while await shop.db.fetchval(WAITING_BEHIND, blocker_pid) < 1:
                await asyncio.sleep(0.01)
        assert not any(t.done() for t in racing)
    responses = await asyncio.gather(*racing)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 422], [r.text for r in responses]
    (refused,) = [r.json() for r in responses if r.status_code == 422]
    assert (refused["code"], refused["limit"]) == ("limit_exceeded", "tier0.outgoing.day.amount")
    assert (await shop.balances())["posted"] == 30_000 - 15_000
    async with tenant_transaction(shop.db, shop.tenant) as conn:
        used = await conn.fetch(
            "SELECT period, amount_used, count_used FROM compliance_limit_usage WHERE tenant_id = $1", shop.tenant
        )
    assert {r["period"]: (r["amount_used"], r["count_used"]) for r in used} == {
        "day": (15_000, 2),
        "month": (15_000, 2),
    }


async def test_a_retry_with_the_same_idempotency_key_replays_its_answer_whatever_the_rules_say_now(shop: Shop) -> None:
    await verify_customer(shop.db, shop.tenant, "fan", tier=1)
    body = {"wallet_id": shop.wallet["id"], "amount": 6_000, "destination": {"account_number": BANK}}
    first = await shop.client.post("/v1/withdrawals", json=body, headers={"Idempotency-Key": "wd-replay"})
    assert first.status_code == 201, first.text
    await shop.rules(BLOCK_LARGE)
    again = await shop.client.post("/v1/withdrawals", json=body, headers={"Idempotency-Key": "wd-replay"})
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.json()["id"] == first.json()["id"]
    assert _problem(await shop.withdraw(6_000), 422, "blocked_by_policy")["rule_ids"] == ["large"]


async def test_approving_a_held_purchase_of_content_the_customer_bought_meanwhile_is_refused(shop: Shop) -> None:
    await shop.rules(REVIEW_LARGE)
    held = (await shop.buy("big")).json()
    await shop.rules([])
    bought = (await shop.buy("big")).json()  # no review now: completed at once
    assert bought["status"] == "completed"
    start = await shop.balances()
    refused = await shop.client.post(f"/v1/reviews/{held['review_id']}/approve", json={"reason": "late"})
    assert (refused.status_code, refused.json()["code"]) == (409, "already_entitled")
    assert (await shop.get(f"/v1/reviews/{held['review_id']}"))["status"] == "open"
    assert (await shop.get(f"/v1/purchases/{held['id']}"))["status"] == "pending_review"
    assert await shop.balances() == start
    await shop.decide(held["review_id"], "reject")
    after = await shop.balances()
    assert (after["posted"], after["available"]) == (start["posted"], start["available"] + 6_000)
