"""Customers and wallets over HTTP: create, read, list in pages; personal data sealed at rest;
one wallet per customer and currency, read with balances and its journal history."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from support.server import new_tenant, tenant_id_of

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e


def _person(**extra: object) -> dict[str, object]:
    marker = uuid.uuid4().hex[:10]
    return {
        "type": "person",
        "name": f"Ada Lovelace {marker}",
        "email": f"ada.{marker}@example.com",
        "country": "GB",
    } | extra


async def test_a_customer_is_created_read_and_listed_in_pages(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        created = []
        for index in range(5):
            body = _person(id=f"cus-{index}", metadata={"segment": "vip"})
            response = await client.post("/v1/customers", json=body)
            assert response.status_code == 201, response.text
            out = response.json()
            assert (out["id"], out["name"], out["email"], out["country"], out["type"]) == (
                f"cus-{index}",
                body["name"],
                body["email"],
                "GB",
                "person",
            )
            assert out["metadata"] == {"segment": "vip"}
            created.append(out)
        got = await client.get("/v1/customers/cus-3")
        assert got.status_code == 200
        assert got.json() == created[3]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/customers", params=params)).json()
            seen += [c["id"] for c in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert seen == [f"cus-{i}" for i in range(5)]
        missing = await client.get("/v1/customers/nobody")
        assert missing.status_code == 404
        assert missing.json()["code"] == "customer_not_found"


async def test_a_generated_customer_id_and_an_idempotent_replay_return_the_same_customer(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        body = _person(type="business", email=None, country="DE")
        first = await client.post("/v1/customers", json=body, headers={"Idempotency-Key": "c-1"})
        again = await client.post("/v1/customers", json=body, headers={"Idempotency-Key": "c-1"})
        assert first.status_code == again.status_code == 201
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()
        assert first.json()["email"] is None
        listed = (await client.get("/v1/customers")).json()["data"]
        assert [c["id"] for c in listed] == [first.json()["id"]]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"country": "XX"}, "invalid_customer"),
        ({"country": "UK"}, "invalid_customer"),
        ({"country": "de"}, "invalid_request"),
        ({"email": "not an address"}, "invalid_customer"),
        ({"name": "   "}, "invalid_customer"),
        ({"type": "robot"}, "invalid_request"),
        ({"id": "x" * 53}, "invalid_request"),
    ],
)
async def test_invalid_customers_are_refused_without_echoing_personal_data(
    platform: Platform, change: dict[str, object], code: str
) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        body = _person() | change
        response = await client.post("/v1/customers", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == code
        for value in (body["name"], body["email"]):
            if isinstance(value, str) and value.strip():
                assert value not in response.text
        assert (await client.get("/v1/customers")).json()["data"] == []


async def test_a_second_customer_with_the_same_id_is_a_conflict(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        assert (await client.post("/v1/customers", json=_person(id="dup"))).status_code == 201
        second = await client.post("/v1/customers", json=_person(id="dup"))
        assert second.status_code == 409
        assert second.json()["code"] == "customer_exists"


async def test_name_and_email_are_stored_sealed_not_in_plaintext(platform: Platform, platform_db: Pool) -> None:
    secret = await new_tenant(platform)
    body = _person(id="sealed-1")
    async with platform.client(secret) as client:
        assert (await client.post("/v1/customers", json=body)).status_code == 201
    tenant = await tenant_id_of(platform_db, secret)
    row = await platform_db.fetchrow(
        "SELECT to_jsonb(c)::text AS everything, name_sealed, email_sealed FROM customers c"
        " WHERE tenant_id = $1 AND id = 'sealed-1'",
        tenant,
    )
    assert row is not None
    for value in (str(body["name"]), str(body["email"])):
        assert value not in row["everything"]
        assert value.encode() not in bytes(row["name_sealed"]) + bytes(row["email_sealed"])
    assert bytes(row["name_sealed"])[:1] == b"\x01"  # kassa.shared.crypto's sealed format
    assert await platform_db.fetchval("SELECT count(*) FROM tenant_data_keys WHERE tenant_id = $1", tenant) == 1
    events = await platform_db.fetch(
        "SELECT data::text AS data FROM outbox WHERE tenant_id = $1 AND type = 'CustomerCreated'", tenant
    )
    assert len(events) == 1
    assert str(body["name"]) not in events[0]["data"] and str(body["email"]) not in events[0]["data"]


async def test_a_wallet_per_customer_and_currency_with_balances_and_history(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        assert (await client.post("/v1/customers", json=_person(id="w-1"))).status_code == 201
        created = await client.post("/v1/customers/w-1/wallets", json={"currency": "EUR"})
        assert created.status_code == 201, created.text
        wallet = created.json()
        assert wallet["customer_id"] == "w-1"
        assert wallet["currency"] == "EUR"
        assert wallet["account_id"] == f"wallet:{wallet['id']}"
        assert wallet["balances"] == {"posted": 0, "pending_debits": 0, "pending_credits": 0, "available": 0}
        second = await client.post("/v1/customers/w-1/wallets", json={"currency": "EUR"})
        assert second.status_code == 409
        assert second.json()["code"] == "wallet_exists"
        usd = await client.post("/v1/customers/w-1/wallets", json={"currency": "USD"})
        assert usd.status_code == 201
        listed = (await client.get("/v1/customers/w-1/wallets")).json()["data"]
        assert [w["currency"] for w in listed] == ["EUR", "USD"]
        account = (await client.get(f"/v1/accounts/{wallet['account_id']}")).json()
        assert (account["normal_balance"], account["allow_negative"]) == ("credit", False)
        # Money in through the ledger shows in the wallet's balances and history.
        bank = {"id": "bank", "currency": "EUR", "normal_balance": "debit"}
        assert (await client.post("/v1/accounts", json=bank)).status_code == 201
        for amount in (300, 200, 100):
            moved = await client.post(
                "/v1/transfers",
                json={
                    "debit_account_id": "bank",
                    "credit_account_id": wallet["account_id"],
                    "amount": amount,
                    "currency": "EUR",
                },
            )
            assert moved.status_code == 201
        got = (await client.get(f"/v1/wallets/{wallet['id']}")).json()
        assert got["balances"]["posted"] == got["balances"]["available"] == 600
        first = (await client.get(f"/v1/wallets/{wallet['id']}/entries", params={"limit": "2"})).json()
        assert [e["posted_amount"] for e in first["data"]] == [100, 200]
        assert first["has_more"] is True
        rest = (await client.get(f"/v1/wallets/{wallet['id']}/entries", params={"cursor": first["next_cursor"]})).json()
        assert [e["posted_amount"] for e in rest["data"]] == [300]
        assert rest["has_more"] is False


async def test_wallets_need_an_existing_customer_and_a_known_currency_and_stay_in_their_tenant(
    platform: Platform,
) -> None:
    async with (
        platform.client(await new_tenant(platform)) as client,
        platform.client(await new_tenant(platform)) as other,
    ):
        missing = await client.post("/v1/customers/ghost/wallets", json={"currency": "EUR"})
        assert missing.status_code == 404
        assert missing.json()["code"] == "customer_not_found"
        assert (await client.post("/v1/customers", json=_person(id="mine"))).status_code == 201
        unknown = await client.post("/v1/customers/mine/wallets", json={"currency": "ABC"})
        assert unknown.status_code == 400
        wallet = (await client.post("/v1/customers/mine/wallets", json={"currency": "EUR"})).json()
        assert (await other.get(f"/v1/wallets/{wallet['id']}")).status_code == 404
        assert (await other.get("/v1/customers/mine")).status_code == 404
        assert (await other.post("/v1/customers/mine/wallets", json={"currency": "EUR"})).status_code == 404
        nowhere = await client.get("/v1/wallets/wal_nothing")
        assert nowhere.status_code == 404
        assert nowhere.json()["code"] == "wallet_not_found"
