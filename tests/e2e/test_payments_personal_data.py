"""Personal data (a customer's name and email) and instrument numbers (card, bank account) never
appear in kassa's logs, its events or its stored responses; every event of the flows matches its
schema, and the tenant's ledger stays balanced."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.events.validation import validate_event
from support.compliance import verify_customer
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes
from support.server import new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
# Luhn-valid and not one of the sandbox's magic numbers: succeeds, and is unique to this test.
CARD = "4111111111111111"
BANK = "000123456789"
WAIT_S = 30.0


async def _settled(client: httpx.AsyncClient, path: str) -> dict[str, object]:
    async with asyncio.timeout(WAIT_S):
        while True:
            found: dict[str, object] = (await client.get(path)).json()
            if found["status"] != "pending":
                return found
            await asyncio.sleep(0.05)


async def test_no_personal_data_or_instrument_number_in_logs_events_or_stored_rows(
    platform: Platform, platform_db: Pool
) -> None:
    secret = await new_tenant(platform)
    marker = uuid.uuid4().hex
    name, email = f"Hedy Lamarr {marker}", f"hedy.{marker}@example.org"
    async with platform.client(secret) as client:
        customer = await client.post(
            "/v1/customers", json={"type": "person", "name": name, "email": email, "country": "AT"}
        )
        assert customer.status_code == 201
        customer_id = customer.json()["id"]
        assert (
            await client.post("/v1/customers", json={"type": "person", "name": name, "country": "XX"})
        ).status_code == 400
        assert (await client.get(f"/v1/customers/{customer_id}")).json()["email"] == email
        wallet = (await client.post(f"/v1/customers/{customer_id}/wallets", json={"currency": "EUR"})).json()
        await verify_customer(platform_db, await tenant_id_of(platform_db, secret), customer_id)  # withdrawals: tier 1
        card = {"type": "card", "number": CARD}
        topup = await client.post(
            "/v1/topups",
            json={"wallet_id": wallet["id"], "amount": 1000, "currency": "EUR", "payment_method": card},
            headers={"Idempotency-Key": "pii-top"},
        )
        assert (await _settled(client, f"/v1/topups/{topup.json()['id']}"))["status"] == "succeeded"
        invalid = await client.post(
            "/v1/topups",
            json={
                "wallet_id": wallet["id"],
                "amount": 1,
                "currency": "EUR",
                "payment_method": card | {"number": CARD[:-1] + "2"},
            },
        )
        assert invalid.status_code == 422
        withdrawal = await client.post(
            "/v1/withdrawals",
            json={"wallet_id": wallet["id"], "amount": 400, "destination": {"account_number": BANK}},
            headers={"Idempotency-Key": "pii-wd"},
        )
        assert (await _settled(client, f"/v1/withdrawals/{withdrawal.json()['id']}"))["status"] == "succeeded"
    tenant = await tenant_id_of(platform_db, secret)
    envelopes = await outbox_envelopes(platform_db, tenant)
    types = {e.type for e in envelopes}
    assert {"CustomerCreated", "WalletCreated", "TopupSucceeded", "WithdrawalSucceeded"} <= types
    for envelope in envelopes:
        validate_event(envelope)
    customer_events = [e for e in envelopes if e.aggregate_id == customer_id]
    assert [e.data["id"] for e in customer_events] == [customer_id]
    stored = await platform_db.fetchval(
        "SELECT string_agg(x, ' ') FROM ("
        " SELECT data::text AS x FROM outbox WHERE tenant_id = $1"
        " UNION ALL SELECT convert_from(response_body, 'UTF8') FROM idempotency_keys WHERE tenant_id = $1"
        " UNION ALL SELECT to_jsonb(t)::text FROM topups t WHERE tenant_id = $1"
        " UNION ALL SELECT to_jsonb(w)::text FROM withdrawals w WHERE tenant_id = $1"
        " UNION ALL SELECT metadata::text FROM accounts WHERE tenant_id = $1) s",
        tenant,
    )
    logs = "\n".join(platform.log_lines())
    assert customer_id in stored
    assert "/v1/topups" in logs and "/v1/providers/sandbox/callbacks" in logs  # the flows were logged
    for value in (name, email, marker, CARD, CARD[:-1] + "2", BANK):
        assert value not in stored, "personal data or an instrument number was stored in the clear"
        assert value not in logs, "personal data or an instrument number reached the logs"
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)
