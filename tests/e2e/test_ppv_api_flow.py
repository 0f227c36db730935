"""Pay-per-view over HTTP: content, purchases with legs, entitlement checks, refunds (full, partial, concurrent)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes
from support.ppv import CONTENT_BODY, http_wallets, wallet_balance
from support.server import balances, new_tenant, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A tenant with ann (1,000), bob (199) and cat (0) wallets and the live stream 'final'."""
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as client:
        await http_wallets(client, {"ann": 1000, "bob": 199, "cat": 0})
        response = await client.post("/v1/content", json=CONTENT_BODY)
        assert response.status_code == 201, response.text
        yield client, tenant
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def buy(client: httpx.AsyncClient, customer: str, content: str = "final", **headers: str) -> httpx.Response:
    body = {"customer_id": customer, "content_id": content, "currency": "EUR"}
    return await client.post("/v1/purchases", json=body, headers=headers)


async def check(client: httpx.AsyncClient, customer: str, content: str = "final") -> dict[str, Any]:
    response = await client.get("/v1/entitlements/check", params={"customer_id": customer, "content_id": content})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_content_can_be_created_read_listed_and_updated(shop: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = shop
    got = (await client.get("/v1/content/final")).json()
    assert got["prices"] == {"EUR": 199} and got["access"]["window"] == "fixed"
    assert (await client.post("/v1/content", json=CONTENT_BODY)).json()["code"] == "content_exists"
    broken = {**CONTENT_BODY, "id": "x", "rights_holders": [{"customer_id": "club", "share_bps": 9000}]}
    assert (await client.post("/v1/content", json=broken)).status_code == 400
    updated = await client.put("/v1/content/final", json={**CONTENT_BODY, "prices": {"EUR": 299, "USD": 300}})
    assert updated.status_code == 200 and updated.json()["prices"] == {"EUR": 299, "USD": 300}
    page = (await client.get("/v1/content", params={"limit": 10})).json()
    assert [c["id"] for c in page["data"]] == ["final"] and page["has_more"] is False
    assert (await client.get("/v1/content/none")).json()["code"] == "content_not_found"


async def test_a_purchase_returns_its_legs_gives_access_and_replays_its_idempotency_key(
    shop: tuple[httpx.AsyncClient, str], platform_db: Pool
) -> None:
    client, tenant = shop
    assert (await check(client, "ann"))["reason"] == "no_entitlement"
    key = str(uuid.uuid4())
    response = await buy(client, "ann", **{"Idempotency-Key": key})
    assert response.status_code == 201, response.text
    purchase = response.json()
    assert [(leg["role"], leg["customer_id"], leg["amount"]) for leg in purchase["legs"]] == [
        ("platform_fee", None, 29),
        ("rights_holder", "club", 85),
        ("rights_holder", "league", 51),
        ("rights_holder", "broadcaster", 34),
    ]
    replay = await buy(client, "ann", **{"Idempotency-Key": key})
    assert replay.status_code == 201 and replay.json() == purchase
    found = await check(client, "ann")
    assert found == {"allowed": True, "reason": "active", "expires_at": None, "purchase_id": purchase["id"]}
    assert await wallet_balance(client, "ann") == 801
    assert (await balances(client, "platform:fees:EUR"))["posted"] == 29
    got = (await client.get(f"/v1/purchases/{purchase['id']}")).json()
    assert got["legs"] == purchase["legs"] and got["refunds"] == []
    listed = (await client.get("/v1/purchases", params={"customer_id": "ann"})).json()
    assert [p["id"] for p in listed["data"]] == [purchase["id"]]
    entitlements = (await client.get("/v1/entitlements", params={"customer_id": "ann"})).json()["data"]
    assert [(e["purchase_id"], e["status"]) for e in entitlements] == [(purchase["id"], "active")]
    events = [e for e in await outbox_envelopes(platform_db, tenant) if e.type == "PurchaseCompleted"]
    assert [e.data["legs"] for e in events] == [purchase["legs"]]


async def test_refused_purchases_answer_their_codes_and_charge_nothing(shop: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = shop
    assert (await buy(client, "ann", "missing")).json()["code"] == "content_not_found"
    usd = await client.post("/v1/purchases", json={"customer_id": "ann", "content_id": "final", "currency": "USD"})
    assert usd.status_code == 422 and usd.json()["code"] == "price_not_available"
    poor = await buy(client, "cat")
    assert poor.status_code == 422 and poor.json()["code"] == "insufficient_funds"
    assert (await buy(client, "bob")).status_code == 201
    again = await buy(client, "bob")
    assert again.status_code == 409 and again.json()["code"] == "already_entitled"
    assert await wallet_balance(client, "bob") == 0
    assert await wallet_balance(client, "cat") == 0
    assert not (await check(client, "cat"))["allowed"]


async def test_refunds_partial_then_full_revoke_access_at_once(
    platform: Platform, shop: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = shop
    purchase = (await buy(client, "ann")).json()
    assert (await check(client, "ann"))["allowed"]
    url = f"/v1/purchases/{purchase['id']}/refunds"
    partial = await client.post(url, json={"amount": 100, "reason": "requested_by_customer"})
    assert partial.status_code == 201, partial.text
    assert sum(leg["amount"] for leg in partial.json()["legs"]) == 100 and not partial.json()["entitlement_revoked"]
    assert (await check(client, "ann"))["allowed"]
    too_much = await client.post(url, json={"amount": 100})
    assert too_much.status_code == 422 and too_much.json()["code"] == "refund_exceeds_purchase"
    full = await client.post(url, json={"reason": "event_cancelled"}, headers={"Idempotency-Key": "r-1"})
    assert full.status_code == 201 and full.json()["amount"] == 99 and full.json()["entitlement_revoked"]
    # Right after the 201, on this connection and on fresh ones (either API worker): no access.
    assert (await check(client, "ann"))["reason"] == "revoked"
    for _ in range(4):
        async with platform.client(client.headers["Authorization"].split()[1]) as fresh:
            assert (await check(fresh, "ann"))["allowed"] is False
    replay = await client.post(url, json={"reason": "event_cancelled"}, headers={"Idempotency-Key": "r-1"})
    assert replay.status_code == 201 and replay.json() == full.json()
    assert await wallet_balance(client, "ann") == 1000
    got = (await client.get(f"/v1/purchases/{purchase['id']}")).json()
    assert got["refunded_amount"] == 199 and len(got["refunds"]) == 2


async def test_concurrent_refunds_over_http_never_exceed_the_price(shop: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = shop
    purchase = (await buy(client, "ann")).json()
    url = f"/v1/purchases/{purchase['id']}/refunds"
    responses = await asyncio.gather(*(client.post(url, json={"amount": 80}) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [201, 201, 422, 422]
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"refund_exceeds_purchase"}
    assert (await client.get(f"/v1/purchases/{purchase['id']}")).json()["refunded_amount"] == 160
    fulls = await asyncio.gather(*(client.post(url, json={}) for _ in range(3)))
    assert sorted(r.status_code for r in fulls) == [201, 422, 422]
    assert await wallet_balance(client, "ann") == 1000
    assert not (await check(client, "ann"))["allowed"]
