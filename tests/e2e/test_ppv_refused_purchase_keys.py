"""A purchase refused while pricing, or a refund of a purchase held for review, keeps its
Idempotency-Key's answer (README, "Idempotency").

Found from the outside: a purchase answered 409 `already_entitled` (or 404 `content_not_found`,
422 `price_not_available`) kept nothing under its key, so the same request with the same key,
retried after the state changed (the entitlement refunded, the content created or priced),
charged the wallet: one key, two different answers, and an effect the first answer had refused.
The same held for a refund of a purchase held for review (404 `purchase_not_found`, as it is
not a completed purchase yet): retried with its key after the approval, it refunded.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from support.ledger import assert_tenant_ledger_consistent
from support.ppv import CONTENT_BODY, http_wallets, wallet_balance
from support.server import new_tenant, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant with ann (1,000) and the live stream 'final' (199 EUR)."""
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as client:
        await http_wallets(client, {"ann": 1000})
        response = await client.post("/v1/content", json=CONTENT_BODY)
        assert response.status_code == 201, response.text
        yield client
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def buy(client: httpx.AsyncClient, key: str, content: str = "final", currency: str = "EUR") -> httpx.Response:
    body = {"customer_id": "ann", "content_id": content, "currency": currency}
    return await client.post("/v1/purchases", json=body, headers={"Idempotency-Key": key})


def same_answer(first: httpx.Response, retry: httpx.Response) -> None:
    assert retry.status_code == first.status_code, retry.text
    assert retry.json() == first.json()
    assert first.headers.get("Idempotent-Replayed") is None
    assert retry.headers.get("Idempotent-Replayed") == "true"


async def test_an_already_entitled_answer_is_replayed_after_the_entitlement_was_refunded(
    shop: httpx.AsyncClient,
) -> None:
    client = shop
    bought = await buy(client, str(uuid.uuid4()))
    assert bought.status_code == 201, bought.text
    key = str(uuid.uuid4())
    refused = await buy(client, key)
    assert refused.status_code == 409 and refused.json()["code"] == "already_entitled"
    refund = await client.post(f"/v1/purchases/{bought.json()['id']}/refunds", json={"reason": "other"})
    assert refund.status_code == 201 and refund.json()["entitlement_revoked"], refund.text
    assert await wallet_balance(client, "ann") == 1000
    same_answer(refused, await buy(client, key))
    assert await wallet_balance(client, "ann") == 1000
    purchases = (await client.get("/v1/purchases", params={"customer_id": "ann"})).json()["data"]
    assert [p["id"] for p in purchases] == [bought.json()["id"]]


async def test_a_content_not_found_or_price_not_available_answer_is_replayed_after_the_content_changed(
    shop: httpx.AsyncClient,
) -> None:
    client = shop
    missing_key, usd_key = str(uuid.uuid4()), str(uuid.uuid4())
    missing = await buy(client, missing_key, content="later")
    assert missing.status_code == 404 and missing.json()["code"] == "content_not_found"
    usd = await buy(client, usd_key, currency="USD")
    assert usd.status_code == 422 and usd.json()["code"] == "price_not_available"
    created = await client.post("/v1/content", json={**CONTENT_BODY, "id": "later"})
    assert created.status_code == 201, created.text
    updated = await client.put("/v1/content/final", json={**CONTENT_BODY, "prices": {"EUR": 199, "USD": 219}})
    assert updated.status_code == 200, updated.text
    same_answer(missing, await buy(client, missing_key, content="later"))
    same_answer(usd, await buy(client, usd_key, currency="USD"))
    assert await wallet_balance(client, "ann") == 1000
    # The same purchases under new keys go through: only the keys are bound to their answers.
    assert (await buy(client, str(uuid.uuid4()), content="later")).status_code == 201
    assert await wallet_balance(client, "ann") == 1000 - 199


async def test_a_refused_key_with_a_different_request_is_still_refused_as_reused(shop: httpx.AsyncClient) -> None:
    client = shop
    key = str(uuid.uuid4())
    assert (await buy(client, key, content="missing")).status_code == 404
    other = await buy(client, key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert await wallet_balance(client, "ann") == 1000


async def test_a_refund_refused_while_its_purchase_was_held_is_replayed_after_the_approval(
    shop: httpx.AsyncClient,
) -> None:
    client = shop
    rules = [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 100}, "action": "review"}]
    stored = await client.post("/v1/compliance/rules", json={"reason": "hold purchases", "rules": rules})
    assert stored.status_code == 201, stored.text
    held = await buy(client, str(uuid.uuid4()))
    assert held.status_code == 201 and held.json()["status"] == "pending_review", held.text
    url, key = f"/v1/purchases/{held.json()['id']}/refunds", str(uuid.uuid4())
    refused = await client.post(url, json={"reason": "other"}, headers={"Idempotency-Key": key})
    assert refused.status_code == 404 and refused.json()["code"] == "purchase_not_found"
    approved = await client.post(f"/v1/reviews/{held.json()['review_id']}/approve", json={"reason": "fine"})
    assert approved.status_code == 200, approved.text
    assert await wallet_balance(client, "ann") == 1000 - 199
    same_answer(refused, await client.post(url, json={"reason": "other"}, headers={"Idempotency-Key": key}))
    assert await wallet_balance(client, "ann") == 1000 - 199
    refund = await client.post(url, json={"reason": "other"}, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert refund.status_code == 201 and refund.json()["amount"] == 199, refund.text
    assert await wallet_balance(client, "ann") == 1000
