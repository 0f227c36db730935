"""Over HTTP, on a platform started with short provider timeouts: a top-up and a withdrawal the
sandbox never answers fail with `provider_timeout` when their hold expires (money released, the
event written), and the sandbox's success sent after that is a payment exception, not applied."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from kassa.store.pool import create_pool
from support.compliance import verify_customer
from support.sandbox import Sandbox
from support.server import new_tenant, own_platform, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import httpx

    from support.server import Platform

pytestmark = pytest.mark.e2e
TIMEOUT_S = 2  # KASSA_TOPUP_TIMEOUT_S and KASSA_WITHDRAWAL_TIMEOUT_S of this platform
WAIT_S = 60.0


@pytest.fixture(scope="module")
def impatient_platform() -> Iterator[Platform]:
    env = {"KASSA_TOPUP_TIMEOUT_S": str(TIMEOUT_S), "KASSA_WITHDRAWAL_TIMEOUT_S": str(TIMEOUT_S)}
    with own_platform("kassa-timeout-", env) as running:
        yield running


@pytest.fixture
async def silent_shop(impatient_platform: Platform) -> AsyncIterator[tuple[httpx.AsyncClient, str, dict[str, Any]]]:
    """A tenant whose sandbox account answers nothing by itself, and a EUR wallet."""
    platform = impatient_platform
    assert platform.sandbox_url is not None
    secret = await new_tenant(platform)
    pool = await create_pool(platform.database_url, size_max=1)
    try:
        tenant = await tenant_id_of(pool, secret)
        await Sandbox(platform.sandbox_url).behave(tenant, manual=True)
        async with platform.client(secret) as client:
            marker = uuid.uuid4().hex[:8]
            person = {"type": "person", "name": f"Waiting {marker}", "country": "DE"}
            customer = await client.post("/v1/customers", json=person)
            assert customer.status_code == 201, customer.text
            # Withdrawals need KYC tier 1 (as in test_payments_topups_withdrawals.py).
            await verify_customer(pool, tenant, customer.json()["id"], tier=1)
    finally:
        await pool.close()
    async with platform.client(secret) as client:
        wallet = await client.post(f"/v1/customers/{customer.json()['id']}/wallets", json={"currency": "EUR"})
        assert wallet.status_code == 201, wallet.text
        yield client, tenant, wallet.json()


async def _left_pending(client: httpx.AsyncClient, kind: str, item_id: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            found: dict[str, Any] = (await client.get(f"/v1/{kind}/{item_id}")).json()
            if found["status"] != "pending":
                return found
            await asyncio.sleep(0.1)


async def _exceptions_of(client: httpx.AsyncClient, item_id: str) -> list[dict[str, Any]]:
    """Wait until the platform recorded an exception about `item_id` (the late callback arrived)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            found = [
                e for e in (await client.get("/v1/payment-exceptions")).json()["data"] if e["object_id"] == item_id
            ]
            if found:
                return found
            await asyncio.sleep(0.1)


async def _balances(client: httpx.AsyncClient, wallet: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = (await client.get(f"/v1/wallets/{wallet['id']}")).json()["balances"]
    return found


async def test_a_top_up_the_provider_never_answers_fails_at_its_timeout_and_a_late_success_is_an_exception(
    impatient_platform: Platform, silent_shop: tuple[httpx.AsyncClient, str, dict[str, Any]]
) -> None:
    client, tenant, wallet = silent_shop
    body = {"wallet_id": wallet["id"], "amount": 900, "currency": "EUR"}
    created = await client.post(
        "/v1/topups", json=body | {"payment_method": {"type": "card", "number": "4242424242424242"}}
    )
    assert created.status_code == 201, created.text
    topup = created.json()
    assert topup["status"] == "pending"
    assert (await _balances(client, wallet))["pending_credits"] == 900

    done = await _left_pending(client, "topups", topup["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "provider_timeout")
    assert await _balances(client, wallet) == {"posted": 0, "pending_debits": 0, "pending_credits": 0, "available": 0}
    transaction = (await client.get(f"/v1/transactions/{topup['transaction_id']}")).json()
    assert transaction["status"] == "expired"
    pool = await create_pool(impatient_platform.database_url, size_max=1)
    try:
        events = await pool.fetch(
            "SELECT type, data->>'failure_code' AS code FROM outbox WHERE tenant_id = $1 AND aggregate_id = $2",
            tenant,
            topup["id"],
        )
    finally:
        await pool.close()
    assert [(e["type"], e["code"]) for e in events] == [("TopupFailed", "provider_timeout")]

    # The provider answers at last: success. It must not be applied.
    await Sandbox(impatient_platform.sandbox_url or "").helper("charges", topup["id"], "succeed")
    exceptions = await _exceptions_of(client, topup["id"])
    assert [(e["event_type"], e["status_at_arrival"]) for e in exceptions] == [("charge.succeeded", "failed")]
    assert (await _balances(client, wallet))["posted"] == 0
    after = (await client.get(f"/v1/topups/{topup['id']}")).json()
    assert (after["status"], after["failure_code"]) == ("failed", "provider_timeout")


async def test_a_withdrawal_the_provider_never_answers_gives_the_money_back_at_its_timeout(
    impatient_platform: Platform, silent_shop: tuple[httpx.AsyncClient, str, dict[str, Any]]
) -> None:
    client, _, wallet = silent_shop
    # Funded by a plain transfer: a top-up would have to be answered within the short timeout.
    bank = {"id": "bank", "currency": "EUR", "normal_balance": "debit", "allow_negative": True}
    assert (await client.post("/v1/accounts", json=bank)).status_code == 201
    funding = {"debit_account_id": "bank", "credit_account_id": wallet["account_id"], "amount": 1000, "currency": "EUR"}
    assert (await client.post("/v1/transfers", json=funding)).status_code == 201
    created = await client.post(
        "/v1/withdrawals",
        json={"wallet_id": wallet["id"], "amount": 400, "destination": {"account_number": "000123456789"}},
    )
    assert created.status_code == 201, created.text
    withdrawal = created.json()
    assert (await _balances(client, wallet))["available"] == 600

    done = await _left_pending(client, "withdrawals", withdrawal["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "provider_timeout")
    released = {"posted": 1000, "pending_debits": 0, "pending_credits": 0, "available": 1000}
    assert await _balances(client, wallet) == released

    await Sandbox(impatient_platform.sandbox_url or "").helper("payouts", withdrawal["id"], "post")
    exceptions = await _exceptions_of(client, withdrawal["id"])
    assert [(e["event_type"], e["status_at_arrival"]) for e in exceptions] == [("payout.posted", "failed")]
    assert await _balances(client, wallet) == released
