"""A purchase of content whose access window has ended is refused over HTTP before any money
moves (409 `content_access_ended`, nothing changes) and the refusal is kept under its
Idempotency-Key; a pre-sale and a from-first-play window keep selling.

Found from the outside: a `fixed` window whose `ends_at` (plus `replay_days`) was in the past
still sold, and the wallet was charged for an entitlement that was expired at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

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


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


ENDED = {"window": "fixed", "starts_at": _at(timedelta(days=-3)), "ends_at": _at(timedelta(days=-3, hours=2))}


@pytest.fixture
async def shop(platform: Platform, platform_db: Pool) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A tenant with ann (1,000) and the live stream 'final' (199 EUR) that ended three days ago."""
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as client:
        await http_wallets(client, {"ann": 1000})
        response = await client.post("/v1/content", json={**CONTENT_BODY, "access": ENDED})
        assert response.status_code == 201, response.text
        yield client, tenant
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def buy(client: httpx.AsyncClient, key: str | None = None, content: str = "final") -> httpx.Response:
    body = {"customer_id": "ann", "content_id": content, "currency": "EUR"}
    return await client.post("/v1/purchases", json=body, headers={"Idempotency-Key": key} if key else {})


async def _state(client: httpx.AsyncClient, db: Pool, tenant: str) -> dict[str, Any]:
    """Everything a purchase could change."""
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM purchases WHERE tenant_id = $1) AS purchases,"
        " (SELECT count(*) FROM entitlements WHERE tenant_id = $1) AS entitlements,"
        " (SELECT count(*) FROM transactions WHERE tenant_id = $1) AS transactions,"
        " (SELECT count(*) FROM outbox WHERE tenant_id = $1) AS events",
        tenant,
    )
    assert row is not None
    entitlements = (await client.get("/v1/entitlements", params={"customer_id": "ann"})).json()["data"]
    purchases = (await client.get("/v1/purchases", params={"customer_id": "ann"})).json()["data"]
    return {**dict(row), "wallet": await wallet_balance(client, "ann"), "api": (entitlements, purchases)}


async def test_a_purchase_of_an_ended_window_is_refused_and_changes_nothing(
    shop: tuple[httpx.AsyncClient, str], platform_db: Pool
) -> None:
    client, tenant = shop
    before = await _state(client, platform_db, tenant)
    refused = await buy(client)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "content_access_ended" and problem["status"] == 409
    assert "final" in problem["detail"]
    assert await _state(client, platform_db, tenant) == before
    assert before["wallet"] == 1000 and before["api"] == ([], [])
    check = (await client.get("/v1/entitlements/check", params={"customer_id": "ann", "content_id": "final"})).json()
    assert check["allowed"] is False and check["reason"] == "no_entitlement"


async def test_the_refusal_is_kept_under_its_key_after_the_window_was_reopened(
    shop: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = shop
    key = str(uuid.uuid4())
    refused = await buy(client, key)
    assert refused.status_code == 409 and refused.json()["code"] == "content_access_ended", refused.text
    assert refused.headers.get("Idempotent-Replayed") is None
    # The replay days reopen the window: the same request with the same key still replays the
    # refusal (as content_not_found and price_not_available are kept), a new key buys.
    reopened = await client.put("/v1/content/final", json={**CONTENT_BODY, "access": {**ENDED, "replay_days": 7}})
    assert reopened.status_code == 200, reopened.text
    retry = await buy(client, key)
    assert (retry.status_code, retry.json()) == (409, refused.json())
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert await wallet_balance(client, "ann") == 1000
    other = await client.post(
        "/v1/purchases",
        json={"customer_id": "ann", "content_id": "final", "currency": "USD"},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    bought = await buy(client, str(uuid.uuid4()))
    assert bought.status_code == 201, bought.text
    assert await wallet_balance(client, "ann") == 1000 - 199


async def test_a_pre_sale_and_a_from_first_play_window_keep_selling(shop: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = shop
    pre_sale = {"window": "fixed", "starts_at": _at(timedelta(days=1)), "ends_at": _at(timedelta(days=1, hours=2))}
    first_play = {"window": "from_first_play", "duration_s": 3600}
    for content_id, access in (("next", pre_sale), ("replay", first_play)):
        created = await client.post("/v1/content", json={**CONTENT_BODY, "id": content_id, "access": access})
        assert created.status_code == 201, created.text
        bought = await buy(client, str(uuid.uuid4()), content=content_id)
        assert bought.status_code == 201, bought.text
    assert await wallet_balance(client, "ann") == 1000 - 2 * 199
    check = (await client.get("/v1/entitlements/check", params={"customer_id": "ann", "content_id": "next"})).json()
    assert check["allowed"] is False and check["reason"] == "not_started"
