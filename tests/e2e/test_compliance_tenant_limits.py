"""Per-tenant limits over HTTP: versioned overrides of the tier defaults, audited, and applied by
the payment routes at once (a purchase over the default passes once the tenant raised it, and is
refused again when the override goes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from kassa.compliance import DEFAULT_LIMITS
from support.ppv import HOLDERS, http_wallets
from support.server import new_tenant

if TYPE_CHECKING:
    import httpx

    from support.server import Platform

pytestmark = pytest.mark.e2e
RAISED = {"tier": 0, "direction": "outgoing", "window": "transaction", "metric": "amount", "max": 15_000}


async def _limits(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/compliance/limits")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _put(client: httpx.AsyncClient, limits: list[dict[str, Any]], reason: str = "licence") -> httpx.Response:
    return await client.put("/v1/compliance/limits", json={"reason": reason, "limits": limits})


async def test_tenant_limits_are_versioned_audited_and_applied_by_the_payment_routes(platform: Platform) -> None:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await http_wallets(client, {"fan": 50_000})
        body = {
            "id": "gala",
            "kind": "video",
            "title": "gala",
            "prices": {"EUR": 12_000},
            "rights_holders": [{"customer_id": c, "share_bps": s} for c, s in HOLDERS],
            "platform_fee_bps": 1000,
        }
        assert (await client.post("/v1/content", json=body)).status_code == 201
        buy = {"customer_id": "fan", "content_id": "gala", "currency": "EUR"}

        defaults = await _limits(client)
        assert defaults["version"] == 0
        assert len(defaults["limits"]) == len(DEFAULT_LIMITS)
        assert {x["source"] for x in defaults["limits"]} == {"default"}
        refused = await client.post("/v1/purchases", json=buy)
        assert (refused.status_code, refused.json()["limit"]) == (422, "tier0.outgoing.transaction.amount")

        raised = await _put(client, [RAISED])
        assert raised.status_code == 200, raised.text
        assert raised.json()["version"] == 1
        mine = [x for x in raised.json()["limits"] if x["source"] == "tenant"]
        assert [(x["name"], x["max"]) for x in mine] == [("tier0.outgoing.transaction.amount", 15_000)]
        assert await _limits(client) == raised.json()
        bought = await client.post("/v1/purchases", json=buy)
        assert bought.status_code == 201, bought.text
        assert bought.json()["status"] == "completed"

        # Refund it, then go back to the defaults: the same purchase is refused again.
        refund_body = {"reason": "requested_by_customer"}
        refund = await client.post(f"/v1/purchases/{bought.json()['id']}/refunds", json=refund_body)
        assert refund.status_code == 201, refund.text
        back = await _put(client, [], reason="back to the defaults")
        assert (back.status_code, back.json()["version"]) == (200, 2)
        again = await client.post("/v1/purchases", json=buy)
        assert (again.status_code, again.json()["limit"]) == (422, "tier0.outgoing.transaction.amount")

        audit = (await client.get("/v1/audit-log")).json()["data"]
        changes = [e for e in audit if e["action"] == "limits.changed"]
        assert [(e["target_id"], e["after"]["reason"]) for e in changes] == [
            ("2", "back to the defaults"),
            ("1", "licence"),
        ]
        assert changes[1]["after"]["limits"] == [RAISED]


async def test_bad_limit_overrides_are_a_clear_4xx_and_change_nothing(platform: Platform) -> None:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        before = await _limits(client)
        twice = await _put(client, [RAISED, RAISED])
        assert (twice.status_code, twice.json()["code"]) == (422, "limits_invalid")
        for bad in (
            [{**RAISED, "tier": 3}],
            [{**RAISED, "max": -1}],
            [{**RAISED, "window": "week"}],
            [{**RAISED, "max": 2**70}],
            [{**RAISED, "extra": 1}],
        ):
            response = await _put(client, bad)
            assert response.status_code == 400, response.text
        assert (await client.put("/v1/compliance/limits", json={"limits": [RAISED]})).status_code == 400  # no reason
        assert await _limits(client) == before
