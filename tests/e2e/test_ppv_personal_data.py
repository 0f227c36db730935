"""Customers' names and emails never reach the logs or the events of pay-per-view flows (searched after them)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from support.ledger import outbox_envelopes
from support.ppv import CONTENT_BODY, HOLDERS
from support.server import create_accounts, fund, new_tenant, tenant_id_of

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e


async def test_names_and_emails_appear_in_no_log_line_and_no_event(platform: Platform, platform_db: Pool) -> None:
    marker = uuid.uuid4().hex[:10]
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    personal: list[str] = []
    async with platform.client(secret) as client:
        await create_accounts(
            client, [{"id": "bank", "currency": "EUR", "normal_balance": "debit", "allow_negative": True}]
        )
        for customer_id, kind in [("ann", "person"), *((h, "business") for h, _ in HOLDERS)]:
            name, email = f"Zelda {marker} {customer_id}", f"{customer_id}.{marker}@example.org"
            personal += [name, email]
            body = {"id": customer_id, "type": kind, "name": name, "email": email, "country": "DE"}
            assert (await client.post("/v1/customers", json=body)).status_code == 201
        wallet = (await client.post("/v1/customers/ann/wallets", json={"currency": "EUR"})).json()
        await fund(client, "bank", wallet["account_id"], 1000, "EUR")
        assert (await client.post("/v1/content", json=CONTENT_BODY)).status_code == 201
        bought = await client.post(
            "/v1/purchases", json={"customer_id": "ann", "content_id": "final", "currency": "EUR"}
        )
        assert bought.status_code == 201, bought.text
        purchase = bought.json()
        check = await client.get("/v1/entitlements/check", params={"customer_id": "ann", "content_id": "final"})
        assert check.json()["allowed"]
        assert (await client.post(f"/v1/entitlements/{purchase['entitlement_id']}/plays")).status_code == 200
        again = await client.post(
            "/v1/purchases", json={"customer_id": "ann", "content_id": "final", "currency": "EUR"}
        )
        assert again.json()["code"] == "already_entitled"
        url = f"/v1/purchases/{purchase['id']}/refunds"
        assert (await client.post(url, json={"amount": 50, "reason": "requested_by_customer"})).status_code == 201
        assert (await client.post(url, json={"reason": "event_cancelled"})).status_code == 201
        assert (await client.post(url, json={})).json()["code"] == "refund_exceeds_purchase"
        for path in (
            f"/v1/purchases/{purchase['id']}",
            "/v1/purchases?customer_id=ann",
            "/v1/entitlements?customer_id=ann",
        ):
            response = await client.get(path)
            assert response.status_code == 200 and not any(p in response.text for p in personal)
    events = [e for e in await outbox_envelopes(platform_db, tenant) if e.type.startswith("Purchase")]
    assert sorted(e.type for e in events) == ["PurchaseCompleted", "PurchaseRefunded", "PurchaseRefunded"]
    event_text = repr([e.data for e in await outbox_envelopes(platform_db, tenant)])
    log_text = "\n".join(platform.log_lines())
    assert marker not in event_text
    assert not [p for p in personal if p in log_text]
    assert marker not in log_text
