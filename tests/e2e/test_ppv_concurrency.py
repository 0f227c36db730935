"""Concurrent purchases over HTTP: a crowd buying one stream all succeed with exact fees; one wallet pays only once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from support.ppv import CONTENT_BODY, http_wallets, wallet_balance
from support.server import balances, new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
CROWD = 1000
IN_FLIGHT_MAX = 64  # concurrent requests from this client (the server's own limits stay out of it)


async def purchase(client: httpx.AsyncClient, customer: str, content: str = "final") -> httpx.Response:
    body = {"customer_id": customer, "content_id": content, "currency": "EUR"}
    return await client.post("/v1/purchases", json=body, headers={"Idempotency-Key": f"buy-{customer}-{content}"})


async def test_a_thousand_concurrent_purchases_of_one_live_stream_all_succeed_and_the_fees_add_up(
    platform: Platform, platform_db: Pool
) -> None:
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    fans = [f"fan{n}" for n in range(CROWD)]
    limits = asyncio.Semaphore(IN_FLIGHT_MAX)
    async with platform.client(secret) as client:
        await http_wallets(client, dict.fromkeys(fans, 199))
        assert (await client.post("/v1/content", json=CONTENT_BODY)).status_code == 201

        async def buy(fan: str) -> httpx.Response:
            async with limits:
                return await purchase(client, fan)

        responses = await asyncio.gather(*(buy(f) for f in fans))
        assert [r.status_code for r in responses] == [201] * CROWD
        fees = sum(r.json()["legs"][0]["amount"] for r in responses)
        assert (await balances(client, "platform:fees:EUR"))["posted"] == fees == 29 * CROWD
        for index, holder in enumerate(("club", "league", "broadcaster"), start=1):
            paid = sum(r.json()["legs"][index]["amount"] for r in responses)
            assert (await balances(client, f"payable:{holder}:EUR"))["posted"] == paid
    entitled = await platform_db.fetchval(
        "SELECT count(DISTINCT e.purchase_id) FROM entitlements e JOIN purchases p"
        " ON p.tenant_id = e.tenant_id AND p.id = e.purchase_id WHERE e.tenant_id = $1",
        tenant,
    )
    assert entitled == CROWD


async def test_funds_for_one_purchase_let_exactly_one_of_two_concurrent_purchases_succeed(platform: Platform) -> None:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await http_wallets(client, {"bob": 199})
        for content in ("match-a", "match-b"):
            assert (await client.post("/v1/content", json={**CONTENT_BODY, "id": content})).status_code == 201
        responses = await asyncio.gather(purchase(client, "bob", "match-a"), purchase(client, "bob", "match-b"))
        assert sorted(r.status_code for r in responses) == [201, 422]
        assert {r.json().get("code") for r in responses if r.status_code == 422} == {"insufficient_funds"}
        assert await wallet_balance(client, "bob") == 0
