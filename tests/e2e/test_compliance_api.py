"""Compliance over HTTP: versioned rules, reviews (approve posts, reject voids), bad input changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from kassa.compliance import ComplianceService
from kassa.ledger import Batcher, LedgerService
from kassa.shared.limits import request_body_bytes_max, review_reason_chars_max
from kassa.store.pool import create_pool
from support.compliance import payment, set_standing
from support.server import create_accounts, fund, new_tenant, send_head_only, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
RULES = {
    "reason": "second look at large payments",
    "rules": [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "review"}],
}


@pytest.fixture(scope="module")
async def shop(
    platform: Platform, platform_db: Pool
) -> AsyncIterator[tuple[httpx.AsyncClient, str, ComplianceService]]:
    """A tenant with a funded customer account `c1-a` and a payee `artist`, its rules set, and a
    compliance service of this test process on the platform's database (a second API process)."""
    secret = await new_tenant(platform)
    app_pool = await create_pool(platform.app_database_url, size_max=4)
    batcher = Batcher(app_pool)
    batcher.start()
    async with platform.client(secret) as client:
        await create_accounts(
            client,
            [
                {"id": "bank", "currency": "USD", "allow_negative": True},
                {"id": "c1-a", "currency": "USD"},
                {"id": "artist", "currency": "USD"},
            ],
        )
        await fund(client, "bank", "c1-a", 1_000_000)
        tenant = await tenant_id_of(platform_db, secret)
        # Tier 2: room for the many held payments of this module under the day limits.
        await set_standing(app_pool, tenant, "c1", datetime(2020, 1, 1, tzinfo=UTC), tier=2)
        response = await client.post("/v1/compliance/rules", json=RULES)
        assert response.status_code == 201, response.text
        try:
            yield (
                client,
                await tenant_id_of(platform_db, secret),
                ComplianceService(app_pool, LedgerService(app_pool, batcher)),
            )
        finally:
            await batcher.stop()
            await app_pool.close()


async def held(shop: tuple[httpx.AsyncClient, str, ComplianceService], amount: int = 6_000) -> tuple[str, str]:
    _, tenant, service = shop
    moved = await service.pay(payment(tenant, "c1-a", amount))
    assert moved.outcome == "held" and moved.review_id is not None
    return moved.review_id, moved.transaction.transaction.id


async def test_rules_are_versioned_over_http(shop: tuple[httpx.AsyncClient, str, ComplianceService]) -> None:
    client, _, _ = shop
    before = (await client.get("/v1/compliance/rules")).json()
    changed = await client.post("/v1/compliance/rules", json={**RULES, "reason": "same rules, new version"})
    assert changed.status_code == 201
    assert changed.json()["version"] == before["version"] + 1
    assert changed.json()["rules"] == before["rules"] == RULES["rules"]


async def test_an_approved_review_posts_the_held_payment_and_a_rejected_one_voids_it(
    shop: tuple[httpx.AsyncClient, str, ComplianceService],
) -> None:
    client, _, _ = shop
    approve_id, approve_tx = await held(shop)
    reject_id, reject_tx = await held(shop)
    queue = (await client.get("/v1/reviews", params={"status": "open"})).json()["data"]
    assert {approve_id, reject_id} <= {r["id"] for r in queue}
    assert (await client.get(f"/v1/transactions/{approve_tx}")).json()["status"] == "pending"

    approved = await client.post(f"/v1/reviews/{approve_id}/approve", json={"reason": "known supplier"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["reason"], body["rule_ids"]) == ("approved", "known supplier", ["large"])
    assert body["reviewer"].startswith("key_") and body["rule_version"] >= 1
    assert (await client.get(f"/v1/transactions/{approve_tx}")).json()["status"] == "posted"

    rejected = await client.post(f"/v1/reviews/{reject_id}/reject", json={"reason": "no invoice"})
    assert rejected.status_code == 200, rejected.text
    assert (await client.get(f"/v1/transactions/{reject_tx}")).json()["status"] == "voided"

    again = await client.post(f"/v1/reviews/{approve_id}/reject", json={"reason": "changed my mind"})
    assert (again.status_code, again.json()["code"]) == (409, "review_decided")
    assert (await client.get(f"/v1/transactions/{approve_tx}")).json()["status"] == "posted"
    assert (await client.get(f"/v1/reviews/{approve_id}")).json()["status"] == "approved"


async def test_another_tenant_sees_no_review_and_cannot_decide_one(
    platform: Platform, shop: tuple[httpx.AsyncClient, str, ComplianceService]
) -> None:
    review_id, tx_id = await held(shop)
    async with platform.client(await new_tenant(platform)) as other:
        assert (await other.get(f"/v1/reviews/{review_id}")).status_code == 404
        decided = await other.post(f"/v1/reviews/{review_id}/approve", json={"reason": "mine now"})
        assert (decided.status_code, decided.json()["code"]) == (404, "review_not_found")
        # Nothing of the review leaks: a bare problem document that knows no transaction.
        assert set(decided.json()) == {"type", "title", "status", "detail", "code", "trace_id"}
        assert tx_id not in decided.text
        assert (await other.get("/v1/reviews")).json()["data"] == []
    client, _, _ = shop
    assert (await client.get(f"/v1/transactions/{tx_id}")).json()["status"] == "pending"


DEEP = (
    b'{"reason":"x","rules":[{"id":"d","action":"block","condition":'
    + b'{"kind":"all","conditions":[' * 2000
    + b"{}"
    + b"]}" * 2000
    + b"}]}"
)
BAD: list[tuple[str, str, str, bytes, int, str]] = [
    # (name, method, path suffix or route, body, status, code); "{review}" is an open review's id
    ("reason missing", "POST", "/v1/reviews/{review}/approve", b"{}", 400, "invalid_request"),
    ("reason empty", "POST", "/v1/reviews/{review}/reject", b'{"reason":""}', 400, "invalid_request"),
    (
        "reason too long",
        "POST",
        "/v1/reviews/{review}/approve",
        json.dumps({"reason": "r" * (review_reason_chars_max + 1)}).encode(),
        400,
        "invalid_request",
    ),
    ("reason with NUL", "POST", "/v1/reviews/{review}/approve", b'{"reason":"a\\u0000b"}', 400, "invalid_request"),
    ("reason lone surrogate", "POST", "/v1/reviews/{review}/approve", b'{"reason":"\\ud800"}', 400, "invalid_request"),
    (
        "reason not a string",
        "POST",
        "/v1/reviews/{review}/approve",
        b'{"reason":12345678901234567890123}',
        400,
        "invalid_request",
    ),
    ("unknown field", "POST", "/v1/reviews/{review}/approve", b'{"reason":"ok","force":true}', 400, "invalid_request"),
    ("review id with NUL", "POST", "/v1/reviews/a%00b/approve", b'{"reason":"ok"}', 404, "review_not_found"),
    ("review id too long", "GET", "/v1/reviews/" + "r" * 65, b"", 404, "review_not_found"),
    ("unknown review", "POST", "/v1/reviews/rev_ghost/approve", b'{"reason":"ok"}', 404, "review_not_found"),
    ("status unknown", "GET", "/v1/reviews?status=pending", b"", 400, "invalid_request"),
    ("cursor with NUL", "GET", "/v1/reviews?cursor=%00", b"", 400, "invalid_request"),
    (
        "rule amount huge",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"block","condition":{"kind":"large_amount","amount_min":1'
        + b"0" * 40
        + b"}}]}",
        400,
        "invalid_request",
    ),
    (
        "rule amount negative",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"block","condition":{"kind":"large_amount","amount_min":-1}}]}',
        400,
        "invalid_request",
    ),
    (
        "rule kind unknown",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"block","condition":{"kind":"__import__"}}]}',
        400,
        "invalid_request",
    ),
    (
        "rule action unknown",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"freeze","condition":{"kind":"blocked_customer"}}]}',
        400,
        "invalid_request",
    ),
    (
        "rule id with unicode",
        "POST",
        "/v1/compliance/rules",
        '{"reason":"x","rules":[{"id":"r\u00e9gle","action":"block","condition":{"kind":"blocked_customer"}}]}'.encode(),
        400,
        "invalid_request",
    ),
    (
        "rule condition with NUL",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"block","condition":{"kind":"high_risk_country","countries":["K\\u0000"]}}]}',
        400,
        "invalid_request",
    ),
    (
        "rule ids repeated",
        "POST",
        "/v1/compliance/rules",
        b'{"reason":"x","rules":[{"id":"h","action":"block","condition":{"kind":"blocked_customer"}},{"id":"h","action":"review","condition":{"kind":"blocked_customer"}}]}',
        422,
        "rule_invalid",
    ),
    ("rules nested deeply", "POST", "/v1/compliance/rules", DEEP, 400, "invalid_request"),
    ("rules reason missing", "POST", "/v1/compliance/rules", b'{"rules":[]}', 400, "invalid_request"),
    ("standing id with newline", "GET", "/v1/compliance/customers/c1%0A", b"", 404, "customer_not_found"),
]


async def state(pool: Pool, tenant: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT (SELECT max(version) FROM compliance_rule_sets WHERE tenant_id = $1) AS rules,"
        " (SELECT count(*) FROM compliance_reviews WHERE tenant_id = $1 AND status = 'open') AS open,"
        " (SELECT count(*) FROM transactions WHERE tenant_id = $1 AND status = 'pending') AS pending",
        tenant,
    )
    assert row is not None
    return dict(row)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
async def test_bad_input_on_compliance_routes_is_a_clear_4xx_that_changes_nothing(
    case: tuple[str, str, str, bytes, int, str],
    shop: tuple[httpx.AsyncClient, str, ComplianceService],
    platform_db: Pool,
) -> None:
    _, method, path, body, status, code = case
    client, tenant, _ = shop
    if "{review}" in path:
        review_id, _ = await held(shop)
        path = path.replace("{review}", review_id)
    before = await state(platform_db, tenant)
    response = await client.request(method, path, content=body or None, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.headers.get("content-type")) == (status, "application/problem+json"), (
        response.text[:300]
    )
    assert response.json()["code"] == code
    assert await state(platform_db, tenant) == before


async def test_an_oversized_decision_is_refused_with_413_and_the_review_stays_open(
    platform: Platform, shop: tuple[httpx.AsyncClient, str, ComplianceService], platform_db: Pool
) -> None:
    client, tenant, _ = shop
    review_id, _ = await held(shop)
    before = await state(platform_db, tenant)
    head = {
        "Authorization": client.headers["authorization"],
        "Content-Type": "application/json",
        "Content-Length": str(request_body_bytes_max + 1),
    }
    status, _, _ = await send_head_only(platform, "POST", f"/v1/reviews/{review_id}/approve", head)
    assert status == 413
    assert await state(platform_db, tenant) == before
