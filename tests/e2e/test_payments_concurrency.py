"""Concurrent writers of payments state: racing deliveries of one callback, a success racing a
failure, and racing wallet creations each end with exactly one winner and money moved once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest

from kassa.notifications import sign
from support.sandbox import Sandbox
from support.server import new_tenant, tenant_id_of

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
CALLBACKS = "/v1/providers/sandbox/callbacks"
RACERS = 8


async def _pending_topup(platform: Platform, platform_db: Pool) -> tuple[httpx.AsyncClient, str, dict[str, Any], str]:
    assert platform.sandbox_url is not None
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    await Sandbox(platform.sandbox_url).behave(tenant, manual=True)
    client = platform.client(secret)
    customer = (await client.post("/v1/customers", json={"type": "person", "name": "Racer", "country": "FR"})).json()
    wallet = (await client.post(f"/v1/customers/{customer['id']}/wallets", json={"currency": "EUR"})).json()
    topup = await client.post(
        "/v1/topups",
        json={
            "wallet_id": wallet["id"],
            "amount": 777,
            "currency": "EUR",
            "payment_method": {"type": "card", "number": "4242424242424242"},
        },
    )
    assert topup.status_code == 201, topup.text
    return client, tenant, wallet, topup.json()["id"]


def _event(tenant: str, topup_id: str, kind: str, event_id: str) -> bytes:
    data = {
        "id": "ch_race",
        "reference": topup_id,
        "failure_code": "card_declined" if kind == "charge.failed" else None,
    }
    return msgspec.json.encode({"id": event_id, "type": kind, "account": tenant, "data": data})


def _secret(platform: Platform) -> str:
    return (platform.data_dir / "sandbox_secret").read_text().strip()


async def _post_all(platform: Platform, deliveries: list[tuple[bytes, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30.0) as anyone:
        return list(
            await asyncio.gather(
                *(
                    anyone.post(CALLBACKS, content=body, headers={"Sandbox-Signature": signature})
                    for body, signature in deliveries
                )
            )
        )


async def test_racing_redeliveries_of_one_success_apply_it_once(platform: Platform, platform_db: Pool) -> None:
    client, tenant, wallet, topup_id = await _pending_topup(platform, platform_db)
    body = _event(tenant, topup_id, "charge.succeeded", "evt_" + uuid.uuid4().hex)
    now = int(time.time())
    # Each redelivery is signed afresh (its own timestamp), as a provider does.
    answers = await _post_all(platform, [(body, sign(body, [_secret(platform)], now - i)) for i in range(RACERS)])
    outcomes = sorted(r.json()["outcome"] for r in answers)
    assert outcomes == ["applied"] + ["duplicate"] * (RACERS - 1)
    assert (await client.get(f"/v1/wallets/{wallet['id']}")).json()["balances"]["posted"] == 777
    await client.aclose()


async def test_racing_replays_of_one_delivery_apply_it_once_and_refuse_the_rest(
    platform: Platform, platform_db: Pool
) -> None:
    client, tenant, wallet, topup_id = await _pending_topup(platform, platform_db)
    body = _event(tenant, topup_id, "charge.succeeded", "evt_" + uuid.uuid4().hex)
    signature = sign(body, [_secret(platform)], int(time.time()))
    answers = await _post_all(platform, [(body, signature)] * RACERS)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [409] * (RACERS - 1)
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"provider_callback_replayed"}
    assert (await client.get(f"/v1/wallets/{wallet['id']}")).json()["balances"]["posted"] == 777
    await client.aclose()


async def test_a_success_racing_a_failure_applies_exactly_one_and_records_the_other(
    platform: Platform, platform_db: Pool
) -> None:
    client, tenant, wallet, topup_id = await _pending_topup(platform, platform_db)
    now = int(time.time())
    deliveries = []
    for kind in ("charge.succeeded", "charge.failed"):
        body = _event(tenant, topup_id, kind, "evt_" + uuid.uuid4().hex)
        deliveries.append((body, sign(body, [_secret(platform)], now)))
    answers = await _post_all(platform, deliveries)
    assert sorted(r.json()["outcome"] for r in answers) == ["applied", "exception"]
    topup = (await client.get(f"/v1/topups/{topup_id}")).json()
    balances = (await client.get(f"/v1/wallets/{wallet['id']}")).json()["balances"]
    assert balances["pending_credits"] == 0
    assert balances["posted"] == (777 if topup["status"] == "succeeded" else 0)
    exceptions = (await client.get("/v1/payment-exceptions")).json()["data"]
    assert [e["object_id"] for e in exceptions] == [topup_id]
    await client.aclose()


async def test_racing_wallet_creations_open_exactly_one_wallet(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        customer = (
            await client.post("/v1/customers", json={"type": "business", "name": "Studio", "country": "SE"})
        ).json()
        answers = await asyncio.gather(
            *(client.post(f"/v1/customers/{customer['id']}/wallets", json={"currency": "SEK"}) for _ in range(RACERS))
        )
        assert sorted(r.status_code for r in answers) == [201] + [409] * (RACERS - 1)
        assert len((await client.get(f"/v1/customers/{customer['id']}/wallets")).json()["data"]) == 1
        accounts = (await client.get("/v1/accounts", params={"limit": "100"})).json()["data"]
        assert len([a for a in accounts if a["id"].startswith("wallet:")]) == 1  # the losers created none
