"""Top-ups and withdrawals over HTTP against the sandbox provider `kassa up` started: success,
decline, duplicate, out-of-order, forged, stale and replayed callbacks, a failure after a
success (an exception, not applied), and withdrawals that succeed, fail and are returned."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest

from kassa.notifications import new_secret, sign
from support.compliance import verify_customer
from support.sandbox import Sandbox
from support.server import new_tenant, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
WAIT_S = 30.0
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
BANK_OK = "000123456789"
BANK_FAILS = "000111111116"
BANK_RETURNS = "000999999991"
CALLBACKS = "/v1/providers/sandbox/callbacks"


@dataclass
class Shop:
    client: httpx.AsyncClient
    tenant: str
    wallet: dict[str, Any]
    sandbox: Sandbox

    async def topup(self, amount: int, card: str = CARD_OK, **headers: str) -> httpx.Response:
        body = {"wallet_id": self.wallet["id"], "amount": amount, "currency": "EUR"}
        return await self.client.post(
            "/v1/topups", json=body | {"payment_method": {"type": "card", "number": card}}, headers=headers
        )

    async def withdraw(self, amount: int, account_number: str = BANK_OK) -> httpx.Response:
        body = {"wallet_id": self.wallet["id"], "amount": amount, "destination": {"account_number": account_number}}
        return await self.client.post("/v1/withdrawals", json=body)

    async def balances(self) -> dict[str, int]:
        found: dict[str, int] = (await self.client.get(f"/v1/wallets/{self.wallet['id']}")).json()["balances"]
        return found

    async def settled(self, kind: str, item_id: str, status: str | None = None) -> dict[str, Any]:
        """Wait until the top-up or withdrawal left `pending` (or reached `status`)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                found: dict[str, Any] = (await self.client.get(f"/v1/{kind}/{item_id}")).json()
                if (status is None and found["status"] != "pending") or found["status"] == status:
                    return found
                await asyncio.sleep(0.05)

    async def deliveries_answered(self, reference: str, count: int) -> list[dict[str, Any]]:
        """Wait until kassa answered `count` deliveries about `reference`."""
        async with asyncio.timeout(WAIT_S):
            while True:
                found = [
                    d
                    for d in await self.sandbox.deliveries(self.tenant)
                    if d["reference"] == reference and d["status"] is not None
                ]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.05)


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[Shop]:
    assert platform.sandbox_url is not None, "kassa up starts the sandbox provider"
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        marker = uuid.uuid4().hex[:8]
        customer = {
            "type": "person",
            "name": f"Payer {marker}",
            "email": f"payer.{marker}@example.com",
            "country": "NL",
        }
        created = await client.post("/v1/customers", json=customer)
        assert created.status_code == 201, created.text
        wallet = await client.post(f"/v1/customers/{created.json()['id']}/wallets", json={"currency": "EUR"})
        assert wallet.status_code == 201, wallet.text
        tenant = await tenant_id_of(platform_db, secret)
        # Withdrawals need KYC tier 1 (tests/e2e/test_compliance_payment_routes.py covers tier 0).
        await verify_customer(platform_db, tenant, created.json()["id"], tier=1)
        yield Shop(client, tenant, wallet.json(), Sandbox(platform.sandbox_url))


async def _clearing(shop: Shop) -> dict[str, int]:
    found: dict[str, int] = (await shop.client.get("/v1/accounts/provider:sandbox:clearing:EUR")).json()["balances"]
    return found


async def test_a_top_up_succeeds_through_the_providers_callback_and_is_idempotent(
    shop: Shop, platform_db: Pool
) -> None:
    created = await shop.topup(1500, **{"Idempotency-Key": "top-1"})
    assert created.status_code == 201, created.text
    topup = created.json()
    assert topup["payment_method"] == {"type": "card", "last4": "4242"}
    assert CARD_OK not in created.text
    done = await shop.settled("topups", topup["id"])
    assert (done["status"], done["failure_code"]) == ("succeeded", None)
    assert (await shop.balances())["posted"] == 1500
    clearing = await _clearing(shop)
    assert (clearing["posted"], clearing["pending_debits"]) == (1500, 0)
    again = await shop.topup(1500, **{"Idempotency-Key": "top-1"})
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == topup["id"] and again.json()["status"] == "succeeded"
    assert (await shop.balances())["posted"] == 1500
    stored = await platform_db.fetchval(
        "SELECT count(*) FROM topups t JOIN idempotency_keys k USING (tenant_id)"
        " WHERE t.tenant_id = $1 AND (to_jsonb(t)::text LIKE '%' || $2 || '%'"
        " OR convert_from(k.response_body, 'UTF8') LIKE '%' || $2 || '%')",
        shop.tenant,
        CARD_OK,
    )
    assert stored == 0
    events = await platform_db.fetch(
        "SELECT type, data FROM outbox WHERE tenant_id = $1 AND type LIKE 'Topup%'", shop.tenant
    )
    assert [(e["type"], e["data"]["id"], e["data"]["amount"]) for e in events] == [
        ("TopupSucceeded", topup["id"], 1500)
    ]


async def test_a_declined_card_fails_the_top_up_and_releases_its_hold(shop: Shop) -> None:
    created = await shop.topup(700, CARD_DECLINED)
    assert created.status_code == 201
    done = await shop.settled("topups", created.json()["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "card_declined")
    assert await shop.balances() == {"posted": 0, "pending_debits": 0, "pending_credits": 0, "available": 0}
    assert (await _clearing(shop))["pending_debits"] == 0


async def test_a_bad_card_or_a_wallet_in_another_currency_is_refused_before_anything_moves(shop: Shop) -> None:
    bad = await shop.topup(100, "4242424242424241")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_payment_method"
    assert "4242424242424241" not in bad.text
    body = {"wallet_id": shop.wallet["id"], "amount": 100, "currency": "USD"}
    other = await shop.client.post("/v1/topups", json=body | {"payment_method": {"type": "card", "number": CARD_OK}})
    assert other.status_code == 422 and other.json()["code"] == "currency_mismatch"
    missing = await shop.client.post(
        "/v1/topups",
        json={
            "wallet_id": "wal_none",
            "amount": 1,
            "currency": "EUR",
            "payment_method": {"type": "card", "number": CARD_OK},
        },
    )
    assert missing.status_code == 404 and missing.json()["code"] == "wallet_not_found"
    assert (await shop.balances())["pending_credits"] == 0


async def test_a_duplicate_success_callback_is_a_no_op(shop: Shop, platform_db: Pool) -> None:
    await shop.sandbox.behave(shop.tenant, duplicate=True)
    topup = (await shop.topup(900)).json()
    await shop.settled("topups", topup["id"])
    answered = await shop.deliveries_answered(topup["id"], 3)  # pending, succeeded, succeeded again
    final = [d for d in answered if d["type"] == "charge.succeeded"]
    assert len(final) == 2 and final[0]["event_id"] == final[1]["event_id"]
    assert [d["status"] for d in final] == [200, 200]
    outcomes = await platform_db.fetch(
        "SELECT outcome FROM provider_callbacks WHERE tenant_id = $1 AND type = 'charge.succeeded' ORDER BY signed_at",
        shop.tenant,
    )
    assert [r["outcome"] for r in outcomes] == ["applied", "duplicate"]
    assert (await shop.balances())["posted"] == 900


async def test_out_of_order_callbacks_end_in_the_same_state(shop: Shop) -> None:
    await shop.sandbox.behave(shop.tenant, out_of_order=True)
    topup = (await shop.topup(400)).json()
    await shop.deliveries_answered(topup["id"], 2)  # succeeded first, then the late pending
    assert (await shop.settled("topups", topup["id"]))["status"] == "succeeded"
    assert (await shop.balances())["posted"] == 400


def _forge(body: bytes, secret: str, signed_at: int) -> dict[str, str]:
    return {"Sandbox-Signature": sign(body, [secret], signed_at), "content-type": "application/json"}


async def test_forged_stale_unsigned_and_replayed_callbacks_change_nothing(shop: Shop, platform: Platform) -> None:
    await shop.sandbox.behave(shop.tenant, manual=True)
    topup = (await shop.topup(2500)).json()
    body = msgspec.json.encode(
        {
            "id": "evt_forged",
            "type": "charge.succeeded",
            "account": shop.tenant,
            "data": {"id": "ch_x", "reference": topup["id"], "failure_code": None},
        }
    )
    real_secret = (platform.data_dir / "sandbox_secret").read_text().strip()
    now = int(time.time())
    async with httpx.AsyncClient(base_url=platform.base_url) as anyone:
        unsigned = await anyone.post(CALLBACKS, content=body)
        forged = await anyone.post(CALLBACKS, content=body, headers=_forge(body, new_secret(), now))
        stale = await anyone.post(CALLBACKS, content=body, headers=_forge(body, real_secret, now - 301))
        tampered = await anyone.post(
            CALLBACKS, content=body.replace(b"2500", b"9999") + b" ", headers=_forge(body, real_secret, now)
        )
        codes = [(r.status_code, r.json()["code"]) for r in (unsigned, forged, stale, tampered)]
        assert codes == [
            (400, "provider_callback_invalid"),
            (400, "provider_signature_mismatch"),
            (400, "provider_callback_stale"),
            (400, "provider_signature_mismatch"),
        ]
        assert (await shop.client.get(f"/v1/topups/{topup['id']}")).json()["status"] == "pending"
        assert (await shop.balances())["posted"] == 0
        await shop.sandbox.helper("charges", topup["id"], "succeed")
        assert (await shop.settled("topups", topup["id"]))["status"] == "succeeded"
        delivered = (await shop.deliveries_answered(topup["id"], 1))[0]
        replayed = await anyone.post(
            CALLBACKS,
            content=delivered["body"].encode(),
            headers={"Sandbox-Signature": delivered["signature"], "content-type": "application/json"},
        )
        assert replayed.status_code == 409
        assert replayed.json()["code"] == "provider_callback_replayed"
    assert (await shop.balances())["posted"] == 2500


async def test_a_failure_after_a_success_is_recorded_for_an_operator_not_applied(shop: Shop) -> None:
    await shop.sandbox.behave(shop.tenant, manual=True)
    topup = (await shop.topup(1200)).json()
    await shop.sandbox.helper("charges", topup["id"], "succeed")
    assert (await shop.settled("topups", topup["id"]))["status"] == "succeeded"
    await shop.sandbox.helper("charges", topup["id"], "fail", failure_code="card_declined")
    await shop.deliveries_answered(topup["id"], 2)
    assert (await shop.client.get(f"/v1/topups/{topup['id']}")).json()["status"] == "succeeded"
    assert (await shop.balances())["posted"] == 1200
    exceptions = (await shop.client.get("/v1/payment-exceptions")).json()["data"]
    assert [(e["object_id"], e["event_type"], e["status_at_arrival"]) for e in exceptions] == [
        (topup["id"], "charge.failed", "succeeded")
    ]


async def _funded(shop: Shop, amount: int) -> None:
    topup = (await shop.topup(amount)).json()
    assert (await shop.settled("topups", topup["id"]))["status"] == "succeeded"


async def test_a_withdrawal_holds_the_money_then_posts_it_when_the_payout_posts(shop: Shop) -> None:
    await _funded(shop, 5000)
    created = await shop.withdraw(3000)
    assert created.status_code == 201, created.text
    withdrawal = created.json()
    assert withdrawal["destination"] == {"type": "bank_account", "last4": "6789"}
    assert BANK_OK not in created.text
    done = await shop.settled("withdrawals", withdrawal["id"])
    assert done["status"] == "succeeded"
    assert await shop.balances() == {"posted": 2000, "pending_debits": 0, "pending_credits": 0, "available": 2000}


async def test_a_withdrawal_above_the_available_balance_is_refused(shop: Shop) -> None:
    await _funded(shop, 100)
    refused = await shop.withdraw(101)
    assert refused.status_code == 422
    assert refused.json()["code"] == "insufficient_funds"
    assert (await shop.balances())["available"] == 100


async def test_a_failed_payout_releases_the_hold(shop: Shop) -> None:
    await _funded(shop, 800)
    withdrawal = (await shop.withdraw(800, BANK_FAILS)).json()
    done = await shop.settled("withdrawals", withdrawal["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "no_account")
    assert await shop.balances() == {"posted": 800, "pending_debits": 0, "pending_credits": 0, "available": 800}


@pytest.mark.parametrize("out_of_order", [False, True], ids=["in-order", "out-of-order"])
async def test_a_returned_payout_gives_the_money_back_in_any_order(shop: Shop, out_of_order: bool) -> None:
    await shop.sandbox.behave(shop.tenant, out_of_order=out_of_order)
    await _funded(shop, 600)
    withdrawal = (await shop.withdraw(600, BANK_RETURNS)).json()
    await shop.deliveries_answered(withdrawal["id"], 3)  # processing, posted, returned (in some order)
    done = await shop.settled("withdrawals", withdrawal["id"], "returned")
    assert done["failure_code"] == "account_closed"
    # In order the post came first, so a transaction of its own credited the wallet back;
    # out of order the hold was simply released and the late post changed nothing.
    assert (done["return_transaction_id"] is not None) is (not out_of_order)
    assert await shop.balances() == {"posted": 600, "pending_debits": 0, "pending_credits": 0, "available": 600}
    clearing = await _clearing(shop)
    assert (clearing["posted"], clearing["pending_credits"]) == (600, 0)
