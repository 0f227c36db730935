"""The authorization matrix, generated from the route registry: every route x (no key, another
tenant's key, a key without the route's scope, a key with exactly that scope) answers 401, 404
or its own tenant's data (never the other tenant's), 403 naming the scope, and neither 401 nor
403. A route without an entry here fails the test, so no route can be forgotten."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import kassa.api.app  # noqa: F401 - registers every route
from kassa.api.routing import REGISTRY, Endpoint
from kassa.compliance import ComplianceService
from kassa.identity.domain import scopes
from kassa.ledger import Batcher, LedgerService
from kassa.store.pool import create_pool
from support.compliance import payment, verify_customer
from support.server import create_accounts, new_tenant, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

# An override equal to its default: changes nothing for the other routes' calls.
SAME_LIMIT = {"tier": 2, "direction": "incoming", "window": "transaction", "metric": "amount", "max": 1_000_000}


@dataclass
class World:
    """Tenant A's objects (ids unique to this run, so finding one in a body proves a leak)."""

    tag: str
    tenant_a: str = ""
    secret_a: str = ""
    secret_b: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    keys: dict[tuple[str, ...], str] = field(default_factory=dict)  # scopes -> secret, tenant A

    def markers(self) -> list[str]:
        return [self.tenant_a, *self.ids.values(), self.secret_a]


@dataclass(frozen=True)
class Call:
    id: str | None = None
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)


def _transfer(w: World, **extra: Any) -> dict[str, Any]:
    return {
        "debit_account_id": w.ids["bank"],
        "credit_account_id": w.ids["wallet"],
        "amount": 1,
        "currency": "USD",
    } | extra


def _transaction(w: World, **extra: Any) -> dict[str, Any]:
    posting = {"debit_account_id": w.ids["bank"], "credit_account_id": w.ids["wallet"], "amount": 1, "currency": "USD"}
    return {"postings": [posting, posting]} | extra


# How each route is called. A new route needs its line here (test_every_route_has_a_matrix_entry).
MATRIX: dict[tuple[str, str], Callable[[World], Call]] = {
    ("POST", "/v1/tenants"): lambda w: Call(json={"name": f"matrix-{w.tag}"}),
    ("POST", "/v1/accounts"): lambda w: Call(json={"currency": "USD"}),
    ("GET", "/v1/accounts"): lambda w: Call(),
    ("GET", "/v1/accounts/{id}"): lambda w: Call(id=w.ids["wallet"]),
    ("GET", "/v1/accounts/{id}/balance"): lambda w: Call(id=w.ids["wallet"]),
    ("GET", "/v1/accounts/{id}/entries"): lambda w: Call(id=w.ids["wallet"]),
    ("POST", "/v1/transfers"): lambda w: Call(json=_transfer(w)),
    ("GET", "/v1/transfers"): lambda w: Call(),
    ("GET", "/v1/transfers/{id}"): lambda w: Call(id=w.ids["posted"]),
    ("POST", "/v1/transfers/{id}/post"): lambda w: Call(id=w.ids["hold_post"], json={}),
    ("POST", "/v1/transfers/{id}/void"): lambda w: Call(id=w.ids["hold_void"], json={}),
    ("POST", "/v1/transfers/batch"): lambda w: Call(json={"transfers": [_transfer(w)]}),
    ("POST", "/v1/transactions"): lambda w: Call(json=_transaction(w)),
    ("GET", "/v1/transactions"): lambda w: Call(),
    ("GET", "/v1/transactions/{id}"): lambda w: Call(id=w.ids["tx_posted"]),
    ("POST", "/v1/transactions/{id}/post"): lambda w: Call(id=w.ids["tx_hold_post"], json={}),
    ("POST", "/v1/transactions/{id}/void"): lambda w: Call(id=w.ids["tx_hold_void"]),
    ("POST", "/v1/adjustments"): lambda w: Call(json=_transaction(w, reason="matrix")),
    ("GET", "/v1/adjustments/{id}"): lambda w: Call(id=w.ids["adjustment"]),
    ("POST", "/v1/webhook-endpoints"): lambda w: Call(
        json={"url": "https://example.com/hooks/matrix", "event_types": ["*"]}
    ),
    ("GET", "/v1/webhook-endpoints"): lambda w: Call(),
    ("GET", "/v1/webhook-endpoints/{id}"): lambda w: Call(id=w.ids["hook"]),
    ("DELETE", "/v1/webhook-endpoints/{id}"): lambda w: Call(id=w.ids["hook_delete"]),
    ("POST", "/v1/webhook-endpoints/{id}/rotate-secret"): lambda w: Call(id=w.ids["hook"]),
    ("GET", "/v1/webhook-endpoints/{id}/deliveries"): lambda w: Call(id=w.ids["hook"]),
    ("GET", "/v1/notifications"): lambda w: Call(params={"account_id": w.ids["wallet"]}),
    ("POST", "/v1/customers"): lambda w: Call(json={"type": "person", "name": "Matrix Person", "country": "DE"}),
    ("GET", "/v1/customers"): lambda w: Call(),
    ("GET", "/v1/customers/{id}"): lambda w: Call(id=w.ids["customer"]),
    ("POST", "/v1/customers/{id}/wallets"): lambda w: Call(id=w.ids["customer_new"], json={"currency": "USD"}),
    ("GET", "/v1/customers/{id}/wallets"): lambda w: Call(id=w.ids["customer"]),
    ("GET", "/v1/wallets/{id}"): lambda w: Call(id=w.ids["wallet_of_customer"]),
    ("GET", "/v1/wallets/{id}/entries"): lambda w: Call(id=w.ids["wallet_of_customer"]),
    ("POST", "/v1/api-keys"): lambda w: Call(json={"scopes": ["accounts:read"], "name": "matrix"}),
    ("GET", "/v1/api-keys"): lambda w: Call(),
    ("GET", "/v1/api-keys/{id}"): lambda w: Call(id=w.ids["key_read"]),
    ("DELETE", "/v1/api-keys/{id}"): lambda w: Call(id=w.ids["key_revoke"]),
    ("POST", "/v1/api-keys/{id}/rotate"): lambda w: Call(id=w.ids["key_rotate"], json={"overlap_s": 0}),
    ("GET", "/v1/audit-log"): lambda w: Call(),
    ("GET", "/v1/reviews"): lambda w: Call(),
    ("GET", "/v1/reviews/{id}"): lambda w: Call(id=w.ids["review"]),
    ("POST", "/v1/reviews/{id}/approve"): lambda w: Call(id=w.ids["review_approve"], json={"reason": "matrix"}),
    ("POST", "/v1/reviews/{id}/reject"): lambda w: Call(id=w.ids["review_reject"], json={"reason": "matrix"}),
    ("GET", "/v1/compliance/rules"): lambda w: Call(),
    ("POST", "/v1/compliance/rules"): lambda w: Call(json={"reason": "matrix", "rules": REVIEW_RULES}),
    ("GET", "/v1/compliance/limits"): lambda w: Call(),
    ("PUT", "/v1/compliance/limits"): lambda w: Call(json={"reason": "matrix", "limits": [SAME_LIMIT]}),
    ("GET", "/v1/compliance/customers/{id}"): lambda w: Call(id=w.ids["customer"]),
    ("GET", "/v1/compliance/sanctions-hits"): lambda w: Call(),
    ("POST", "/v1/compliance/customers/{id}/verifications"): lambda w: Call(
        id=w.ids["customer_new"],
        json={"tier": 1, "date_of_birth": "1980-01-01", "address": "Matrix 1", "document_number": "MATRIX01"},
    ),
    ("GET", "/v1/compliance/verifications/{id}"): lambda w: Call(id=w.ids["verification"]),
    ("POST", "/v1/compliance/verifications/search"): lambda w: Call(json={"document_number": "REVIEW01"}),
    ("POST", "/v1/compliance/verifications/{id}/decision"): lambda w: Call(
        id=w.ids["verification"], json={"outcome": "verified", "reason": "matrix"}
    ),
    ("POST", "/v1/kyc/callbacks/sandbox"): lambda w: Call(
        json={"tenant_id": w.tenant_a, "verification_id": w.ids["verification"], "outcome": "verified", "reason": "x"}
    ),
    ("POST", "/v1/topups"): lambda w: Call(json=_topup(w)),
    ("GET", "/v1/topups/{id}"): lambda w: Call(id=w.ids["topup"]),
    ("POST", "/v1/withdrawals"): lambda w: Call(
        json={"wallet_id": w.ids["wallet_of_customer"], "amount": 1, "destination": {"account_number": "000123456789"}}
    ),
    ("GET", "/v1/withdrawals/{id}"): lambda w: Call(id=w.ids["withdrawal"]),
    ("GET", "/v1/payment-exceptions"): lambda w: Call(),
    ("POST", "/v1/content"): lambda w: Call(json=_content(w, f"content-new-{w.tag}")),
    ("GET", "/v1/content"): lambda w: Call(),
    ("GET", "/v1/content/{id}"): lambda w: Call(id=w.ids["content"]),
    ("PUT", "/v1/content/{id}"): lambda w: Call(id=w.ids["content"], json=_content(w, w.ids["content"])),
    ("POST", "/v1/purchases"): lambda w: Call(
        json={"customer_id": w.ids["customer"], "content_id": w.ids["content_to_buy"], "currency": "USD"}
    ),
    ("GET", "/v1/purchases"): lambda w: Call(params={"customer_id": w.ids["customer"]}),
    ("GET", "/v1/purchases/{id}"): lambda w: Call(id=w.ids["purchase"]),
    ("POST", "/v1/purchases/{id}/refunds"): lambda w: Call(id=w.ids["purchase"], json={"amount": 1, "reason": "other"}),
    ("GET", "/v1/entitlements"): lambda w: Call(params={"customer_id": w.ids["customer"]}),
    ("GET", "/v1/entitlements/check"): lambda w: Call(
        params={"customer_id": w.ids["customer"], "content_id": w.ids["content"]}
    ),
    ("POST", "/v1/entitlements/{id}/plays"): lambda w: Call(id=w.ids["entitlement"]),
}
REVIEW_RULES: list[dict[str, Any]] = [
    {"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "review"}
]
# Authenticated by the provider's signature, not by an API key (tests/e2e/test_payments_*.py).
UNAUTHENTICATED = {("POST", "/v1/providers/{id}/callbacks")}


def _content(w: World, content_id: str) -> dict[str, Any]:
    return {
        "id": content_id,
        "kind": "video",
        "title": "Matrix video",
        "prices": {"USD": 10},
        "rights_holders": [{"customer_id": w.ids["holder"], "share_bps": 10_000}],
        "platform_fee_bps": 1000,
    }


def _topup(w: World) -> dict[str, Any]:
    card = {"type": "card", "number": "4242424242424242"}
    return {"wallet_id": w.ids["wallet_of_customer"], "amount": 1000, "currency": "USD", "payment_method": card}


def test_every_route_has_a_matrix_entry() -> None:
    registered = {(ep.method, ep.path) for ep in REGISTRY}
    assert registered - set(MATRIX) - UNAUTHENTICATED == set(), "add the new route to MATRIX"
    assert set(MATRIX) - registered == set(), "MATRIX names a route that no longer exists"
    # Routes without an API key: in MATRIX when they answer 401 callback_signature_invalid unsigned
    # (the KYC callback), else listed in UNAUTHENTICATED and covered by their own tests.
    assert {(ep.method, ep.path) for ep in REGISTRY if ep.auth == "none"} - set(MATRIX) == UNAUTHENTICATED


@pytest.fixture(scope="module")
async def world(platform: Platform, platform_db: Pool) -> AsyncIterator[World]:
    w = World(tag=uuid.uuid4().hex[:10])
    w.secret_a, w.secret_b = await new_tenant(platform), await new_tenant(platform)
    w.tenant_a = await tenant_id_of(platform_db, w.secret_a)
    w.ids = {"bank": f"bank-{w.tag}", "wallet": f"wallet-{w.tag}"}
    async with platform.client(w.secret_a) as a:
        await create_accounts(
            a,
            [
                {"id": w.ids["bank"], "currency": "USD", "normal_balance": "debit", "allow_negative": True},
                {"id": w.ids["wallet"], "currency": "USD"},
            ],
        )
        for name, extra in (("posted", {}), ("hold_post", {"pending": True}), ("hold_void", {"pending": True})):
            w.ids[name] = f"{name}-{w.tag}"
            created = await a.post("/v1/transfers", json=_transfer(w, id=w.ids[name], **extra))
            assert created.status_code == 201, created.text
        for name, extra in (
            ("tx_posted", {}),
            ("tx_hold_post", {"pending": True}),
            ("tx_hold_void", {"pending": True}),
        ):
            w.ids[name] = f"{name}-{w.tag}"
            created = await a.post("/v1/transactions", json=_transaction(w, id=w.ids[name], **extra))
            assert created.status_code == 201, created.text
        w.ids["adjustment"] = f"adjustment-{w.tag}"
        adjusted = await a.post("/v1/adjustments", json=_transaction(w, id=w.ids["adjustment"], reason="matrix"))
        assert adjusted.status_code == 201, adjusted.text
        for name in ("customer", "customer_new"):
            w.ids[name] = f"{name}-{w.tag}"
            made = await a.post(
                "/v1/customers", json={"id": w.ids[name], "type": "person", "name": "A Person", "country": "DE"}
            )
            assert made.status_code == 201, made.text
        await verify_customer(platform_db, w.tenant_a, w.ids["customer"])  # withdrawals need KYC tier 1
        wallet = await a.post(f"/v1/customers/{w.ids['customer']}/wallets", json={"currency": "USD"})
        assert wallet.status_code == 201, wallet.text
        w.ids["wallet_of_customer"] = wallet.json()["id"]
        topup = await a.post("/v1/topups", json=_topup(w))
        assert topup.status_code == 201, topup.text
        w.ids["topup"] = topup.json()["id"]
        async with asyncio.timeout(30):
            while (await a.get(f"/v1/topups/{w.ids['topup']}")).json()["status"] == "pending":
                await asyncio.sleep(0.05)
        withdrawal = await a.post(
            "/v1/withdrawals",
            json={
                "wallet_id": w.ids["wallet_of_customer"],
                "amount": 1,
                "destination": {"account_number": "000123456789"},
            },
        )
        assert withdrawal.status_code == 201, withdrawal.text
        w.ids["withdrawal"] = withdrawal.json()["id"]
        # Pay-per-view: a rights holder, two videos, and one purchase of the first (the wallet was
        # topped up above).
        w.ids["holder"] = f"holder-{w.tag}"
        holder = {"id": w.ids["holder"], "type": "business", "name": "A Studio", "country": "DE"}
        assert (await a.post("/v1/customers", json=holder)).status_code == 201
        for name in ("content", "content_to_buy"):
            w.ids[name] = f"{name}-{w.tag}"
            made = await a.post("/v1/content", json=_content(w, w.ids[name]))
            assert made.status_code == 201, made.text
        bought = await a.post(
            "/v1/purchases", json={"customer_id": w.ids["customer"], "content_id": w.ids["content"], "currency": "USD"}
        )
        assert bought.status_code == 201, bought.text
        w.ids["purchase"], w.ids["entitlement"] = bought.json()["id"], bought.json()["entitlement_id"]
        for name in ("hook", "hook_delete"):
            hook = await a.post("/v1/webhook-endpoints", json={"url": "https://example.com/h", "event_types": ["*"]})
            assert hook.status_code == 201, hook.text
            w.ids[name] = hook.json()["id"]
        for name in ("key_read", "key_revoke", "key_rotate"):
            key = await a.post("/v1/api-keys", json={"scopes": ["accounts:read"], "name": name})
            assert key.status_code == 201, key.text
            w.ids[name] = key.json()["id"]
        verification = await a.post(
            f"/v1/compliance/customers/{w.ids['customer']}/verifications",
            json={"tier": 2, "date_of_birth": "1980-01-01", "address": "Matrix 2", "document_number": "REVIEW01"},
        )
        assert verification.status_code == 202, verification.text
        w.ids["verification"] = verification.json()["id"]
    w.ids.update(await held_reviews(platform, w))
    yield w


async def held_reviews(platform: Platform, w: World) -> dict[str, str]:
    """Three payments of tenant A held for review, made by a compliance service of this process
    on the platform's database (no public route moves a customer's money yet)."""
    pool = await create_pool(platform.app_database_url, size_max=2)
    batcher = Batcher(pool)
    batcher.start()
    try:
        service = ComplianceService(pool, LedgerService(pool, batcher))
        await service.set_rules(w.tenant_a, REVIEW_RULES, "key_matrix", "matrix")
        found = {}
        for name in ("review", "review_approve", "review_reject"):
            moved = await service.pay(
                payment(w.tenant_a, w.ids["bank"], 6_000, payee=w.ids["wallet"], direction="incoming")
            )
            assert moved.review_id is not None
            found[name] = moved.review_id
        return found
    finally:
        await batcher.stop()
        await pool.close()


async def key_with(platform: Platform, w: World, held: tuple[str, ...]) -> str:
    """A tenant A key holding exactly `held` (made once per scope set)."""
    if held not in w.keys:
        async with platform.client(w.secret_a) as a:
            response = await a.post("/v1/api-keys", json={"scopes": list(held), "name": "matrix"})
        assert response.status_code == 201, response.text
        w.keys[held] = response.json()["secret"]
    return w.keys[held]


def without(scope: str) -> tuple[str, ...]:
    """Every grantable scope that does not grant `scope`: the widest key that must still be refused."""
    return tuple(s for s in scopes.TENANT_SCOPES if scope not in scopes.expand(frozenset({s})))


async def send(platform: Platform, ep: Endpoint, call: Call, secret: str | None) -> httpx.Response:
    path = ep.path.replace("{id}", call.id or "")
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=platform.base_url, headers=headers, timeout=30.0) as client:
        return await client.request(ep.method, path, json=call.json, params=call.params)


def assert_no_leak(response: httpx.Response, w: World, call: Call) -> None:
    """Nothing of tenant A's that the request did not itself name (a 404 may echo the id asked for)."""
    asked = repr(call)
    for marker in (m for m in w.markers() if m not in asked):
        assert marker not in response.text, f"tenant A's {marker!r} in another tenant's answer: {response.text}"


@pytest.mark.parametrize(
    "ep",
    [ep for ep in REGISTRY if (ep.method, ep.path) not in UNAUTHENTICATED],
    ids=lambda ep: f"{ep.method} {ep.path}",
)
async def test_route_authorization(platform: Platform, world: World, ep: Endpoint) -> None:
    entry = MATRIX.get((ep.method, ep.path))
    if entry is None:
        pytest.fail(f"{ep.method} {ep.path} has no authorization matrix entry")
    call = entry(world)
    if ep.auth == "none":
        # Unauthenticated by design (a provider's callback): it must prove itself another way.
        unsigned = await send(platform, ep, call, world.secret_a)
        assert unsigned.status_code == 401 and unsigned.json()["code"] == "callback_signature_invalid", unsigned.text
        assert_no_leak(unsigned, world, call)
        return
    assert ep.scope is not None

    anonymous = await send(platform, ep, call, None)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized", anonymous.text

    other = await send(platform, ep, call, world.secret_b)
    if ep.auth == "admin":
        assert other.status_code == 403, other.text
    elif "{id}" in ep.path:
        assert other.status_code == 404, other.text
    else:
        assert other.status_code < 500 and other.status_code not in (401, 403), other.text
    assert_no_leak(other, world, call)

    narrow = ("admin",) if ep.auth == "admin" else without(ep.scope)
    refused = await send(platform, ep, call, await key_with(platform, world, narrow))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden" and refused.json()["scope"] == ep.scope
    assert ep.scope in refused.json()["detail"]

    if ep.auth == "admin":
        right = await send(platform, ep, call, platform.admin_key)
    else:
        right = await send(platform, ep, call, await key_with(platform, world, (ep.scope,)))
        platform_key = await send(platform, ep, call, platform.admin_key)
        assert platform_key.status_code == 403, platform_key.text  # the operator's key is no tenant's
    assert right.status_code < 500 and right.status_code not in (401, 403), right.text
    assert 200 <= right.status_code < 300, right.text
