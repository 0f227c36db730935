"""The webhook and notification HTTP routes: shapes, secrets shown only on create/rotate, 404s
across tenants, problem+json codes, and idempotent create (driven in-process over ASGI)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import kassa.api.routes.webhooks  # noqa: F401 - importing registers the routes
from kassa.api.routing import REGISTRY, wrap
from kassa.identity.service import IdentityService
from kassa.settings import Settings
from kassa.shared.limits import webhook_secret_rotation_grace_s
from support.notifications import (
    FAST,
    KEYS,
    Receiver,
    all_in,
    drain_until,
    fan_out,
    log_notifications,
    opt_in,
    transfer_event,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
_OURS = ("/v1/webhook-endpoints", "/v1/notifications")


def routes_client(pool: Pool, allow_private: bool) -> httpx.AsyncClient:
    """The webhook routes in-process, as KASSA_WEBHOOK_ALLOW_PRIVATE=`allow_private` serves them."""
    routes = [Route(ep.path, wrap(ep), methods=[ep.method]) for ep in REGISTRY if ep.path.startswith(_OURS)]
    app = Starlette(routes=routes)
    app.state.services = SimpleNamespace(
        pool=pool,
        identity=IdentityService(pool),
        keys=KEYS,
        settings=dataclasses.replace(Settings.from_env(), webhook_allow_private=allow_private),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kassa.test")


@pytest.fixture
async def api(pool: Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with routes_client(pool, allow_private=True) as client:  # the receivers are on loopback
        yield client


async def new_tenant(pool: Pool) -> tuple[str, dict[str, str]]:
    tenant, key = await IdentityService(pool).create_tenant("routes test", None, None)
    return tenant.id, {"Authorization": f"Bearer {key.secret}"}


async def test_endpoint_lifecycle_over_http(api: httpx.AsyncClient, pool: Pool) -> None:
    _, auth = await new_tenant(pool)
    created = await api.post(
        "/v1/webhook-endpoints", headers=auth, json={"url": "https://example.com/h", "event_types": ["TransferPosted"]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "url", "event_types", "secret", "previous_secret_expires_at", "created_at", "updated_at"}
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["TransferPosted"]

    fetched = await api.get(f"/v1/webhook-endpoints/{body['id']}", headers=auth)
    assert fetched.status_code == 200 and "secret" not in fetched.json()
    listed = (await api.get("/v1/webhook-endpoints", headers=auth)).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert (listed["has_more"], listed["next_cursor"]) == (False, None)

    rotated = await api.post(f"/v1/webhook-endpoints/{body['id']}/rotate-secret?grace_s=60", headers=auth)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != body["secret"] and rotated.json()["previous_secret_expires_at"]
    too_long = await api.post(
        f"/v1/webhook-endpoints/{body['id']}/rotate-secret?grace_s={webhook_secret_rotation_grace_s + 1}", headers=auth
    )
    assert too_long.status_code == 400

    deleted = await api.delete(f"/v1/webhook-endpoints/{body['id']}", headers=auth)
    assert deleted.status_code == 204
    gone = await api.get(f"/v1/webhook-endpoints/{body['id']}", headers=auth)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["code"] == "webhook_endpoint_not_found"


async def test_invalid_input_is_a_problem_with_a_stable_code(api: httpx.AsyncClient, pool: Pool) -> None:
    _, auth = await new_tenant(pool)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "ftp://x", "event_types": ["*"]}, "webhook_url_invalid"),
        ({"url": "https://example.com", "event_types": ["transfer.posted"]}, "webhook_event_types_invalid"),
        ({"url": "https://example.com", "event_types": []}, "invalid_request"),
        ({"url": "https://example.com", "event_types": ["*"], "extra": 1}, "invalid_request"),
    ]
    for payload, code in cases:
        response = await api.post("/v1/webhook-endpoints", headers=auth, json=payload)
        assert (response.status_code, response.json()["code"]) == (400, code), payload
    assert (await api.get("/v1/webhook-endpoints")).status_code == 401


async def test_a_retried_create_with_the_same_idempotency_key_registers_one_endpoint(
    api: httpx.AsyncClient, pool: Pool
) -> None:
    _, auth = await new_tenant(pool)
    headers = {**auth, "Idempotency-Key": "create-hook-1"}
    payload = {"url": "https://example.com/h", "event_types": ["*"]}
    first = await api.post("/v1/webhook-endpoints", headers=headers, json=payload)
    again = await api.post("/v1/webhook-endpoints", headers=headers, json=payload)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    # The secret is shown once: the replay says so instead of repeating it.
    assert first.json()["secret"].startswith("whsec_") and "secret_note" not in first.json()
    assert again.json()["secret"] is None and "shown only once" in again.json()["secret_note"]
    assert {k: v for k, v in again.json().items() if k not in ("secret", "secret_note")} == {
        k: v for k, v in first.json().items() if k != "secret"
    }
    assert len((await api.get("/v1/webhook-endpoints", headers=auth)).json()["data"]) == 1
    reused = await api.post("/v1/webhook-endpoints", headers=headers, json={**payload, "url": "https://x.io"})
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_another_tenant_gets_404_for_every_endpoint_route(api: httpx.AsyncClient, pool: Pool) -> None:
    _, mine = await new_tenant(pool)
    _, theirs = await new_tenant(pool)
    endpoint_id = (
        await api.post(
            "/v1/webhook-endpoints", headers=mine, json={"url": "https://example.com/h", "event_types": ["*"]}
        )
    ).json()["id"]
    path = f"/v1/webhook-endpoints/{endpoint_id}"
    for method, url in (
        ("GET", path),
        ("DELETE", path),
        ("POST", f"{path}/rotate-secret"),
        ("GET", f"{path}/deliveries"),
    ):
        response = await api.request(method, url, headers=theirs)
        assert response.status_code == 404, (method, url)
    assert (await api.get("/v1/webhook-endpoints", headers=theirs)).json()["data"] == []
    assert (await api.get(path, headers=mine)).status_code == 200


async def test_deliveries_list_every_attempt(api: httpx.AsyncClient, pool: Pool, receiver: Receiver) -> None:
    tenant_id, auth = await new_tenant(pool)
    endpoint_id = (
        await api.post("/v1/webhook-endpoints", headers=auth, json={"url": receiver.url, "event_types": ["*"]})
    ).json()["id"]
    receiver.statuses = [502, 200]
    await fan_out(pool, transfer_event(tenant_id))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant_id), FAST)

    page = (await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=1", headers=auth)).json()
    (delivery,) = page["data"]
    assert delivery["status"] == "succeeded" and delivery["next_attempt_at"] is None
    assert [(a["attempt_no"], a["status_code"], a["outcome"]) for a in delivery["attempts"]] == [
        (1, 502, "retry"),
        (2, 200, "succeeded"),
    ]
    assert page["has_more"] is False


async def test_notifications_are_listed_per_account_and_require_one(api: httpx.AsyncClient, pool: Pool) -> None:
    tenant_id, auth = await new_tenant(pool)
    await opt_in(pool, tenant_id, "bob")  # bob's own AccountCreated is its oldest notification
    for _ in range(3):
        await log_notifications(pool, transfer_event(tenant_id))
    first = (await api.get("/v1/notifications?account_id=bob&limit=2", headers=auth)).json()
    assert len(first["data"]) == 2 and first["has_more"]
    rest = (
        await api.get(f"/v1/notifications?account_id=bob&limit=2&cursor={first['next_cursor']}", headers=auth)
    ).json()
    assert len(rest["data"]) == 2 and not rest["has_more"]
    assert rest["data"][0]["data"]["direction"] == "credit"
    assert rest["data"][1]["event_type"] == "AccountCreated"
    missing = await api.get("/v1/notifications", headers=auth)
    assert (missing.status_code, missing.json()["code"]) == (400, "invalid_request")
    _, other = await new_tenant(pool)
    assert (await api.get("/v1/notifications?account_id=bob", headers=other)).json()["data"] == []


async def stored_responses(pool: Pool, tenant_id: str) -> list[bytes]:
    rows = await pool.fetch("SELECT response_body FROM idempotency_keys WHERE tenant_id = $1", tenant_id)
    return [bytes(r["response_body"]) for r in rows]


async def test_no_stored_response_and_no_replay_ever_holds_a_signing_secret(api: httpx.AsyncClient, pool: Pool) -> None:
    tenant_id, auth = await new_tenant(pool)
    payload = {"url": "https://example.com/h?token=abc", "event_types": ["*"]}
    created = await api.post("/v1/webhook-endpoints", headers={**auth, "Idempotency-Key": "c1"}, json=payload)
    endpoint_id, first_secret = created.json()["id"], created.json()["secret"]
    rotate = f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret?grace_s=60"
    rotated = await api.post(rotate, headers={**auth, "Idempotency-Key": "r1"})
    assert rotated.status_code == 200 and rotated.json()["secret"].startswith("whsec_")
    replayed = await api.post(rotate, headers={**auth, "Idempotency-Key": "r1"})
    assert replayed.headers.get("idempotent-replayed") == "true" and replayed.status_code == 200
    assert replayed.json()["secret"] is None and replayed.json()["secret_note"]
    assert replayed.json()["previous_secret_expires_at"] == rotated.json()["previous_secret_expires_at"]
    # A replay neither rotates again nor hands out the rotated-away or the current secret.
    revoked = await api.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret?grace_s=0", headers=auth)
    for key, path in (("c1", "/v1/webhook-endpoints"), ("r1", rotate)):
        again = await api.post(path, headers={**auth, "Idempotency-Key": key}, json=payload if key == "c1" else None)
        assert again.json()["secret"] is None, again.text
    await api.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=auth)
    after_delete = await api.post("/v1/webhook-endpoints", headers={**auth, "Idempotency-Key": "c1"}, json=payload)
    assert after_delete.json()["secret"] is None
    stored = await stored_responses(pool, tenant_id)
    assert len(stored) == 2
    for secret in (first_secret, rotated.json()["secret"], revoked.json()["secret"]):
        assert not any(secret.encode() in body for body in stored)
        row = await pool.fetchval("SELECT t::text FROM webhook_endpoints t WHERE tenant_id = $1", tenant_id)
        assert secret not in row  # at rest only sealed


async def test_a_rotation_with_another_grace_under_the_same_key_is_a_reused_key(
    api: httpx.AsyncClient, pool: Pool
) -> None:
    _, auth = await new_tenant(pool)
    created = await api.post(
        "/v1/webhook-endpoints", headers=auth, json={"url": "https://example.com/h", "event_types": ["*"]}
    )
    path = f"/v1/webhook-endpoints/{created.json()['id']}/rotate-secret"
    first = await api.post(f"{path}?grace_s=60", headers={**auth, "Idempotency-Key": "r"})
    other = await api.post(f"{path}?grace_s=0", headers={**auth, "Idempotency-Key": "r"})
    assert first.status_code == 200
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


async def test_an_upper_case_scheme_is_normalised_instead_of_failing_in_the_database(
    api: httpx.AsyncClient, pool: Pool
) -> None:
    _, auth = await new_tenant(pool)
    response = await api.post(
        "/v1/webhook-endpoints", headers=auth, json={"url": "HTTPS://Example.COM/Hook", "event_types": ["*"]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == "https://example.com/Hook"


async def test_registration_over_http_refuses_internal_targets_with_a_stable_code(pool: Pool) -> None:
    _, auth = await new_tenant(pool)
    async with routes_client(pool, allow_private=False) as strict:
        for url in ("http://127.1:8000/", "http://0x7f000001/", "http://2852039166/", "http://localhost/"):
            response = await strict.post("/v1/webhook-endpoints", headers=auth, json={"url": url, "event_types": ["*"]})
            assert response.status_code == 400, (url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "webhook_url_target_refused"
        assert (await strict.get("/v1/webhook-endpoints", headers=auth)).json()["data"] == []
