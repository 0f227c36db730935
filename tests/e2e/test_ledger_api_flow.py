"""The documented ledger flow works end to end over HTTP against the platform started as `make run` does."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from support.ledger import assert_tenant_ledger_consistent
from support.server import balances, create_accounts, fund, new_tenant, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

ACCOUNTS: list[dict[str, object]] = [
    {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True},
    {"id": "alice", "currency": "USD", "metadata": {"owner": "alice"}},
    {"id": "bob", "currency": "USD"},
]


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh tenant with bank, alice (funded with 10,000) and bob; its ledger is checked after the test."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_accounts(client, ACCOUNTS)
        await fund(client, "bank", "alice", 10_000)
        yield client


@pytest.fixture
async def tenant_ledger(platform_db: Pool, api: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    tenant = await tenant_id_of(platform_db, api.headers["authorization"].removeprefix("Bearer "))
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


def transfer(debit: str, credit: str, amount: int, **extra: object) -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD", **extra}


async def test_a_posted_transfer_moves_money_and_writes_the_journal(
    api: httpx.AsyncClient, tenant_ledger: None
) -> None:
    created = await api.post("/v1/transfers", json=transfer("alice", "bob", 2_500, reference="rent"))
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["amount"], body["currency"], body["reference"]) == ("posted", 2_500, "USD", "rent")
    assert body["expires_at"] is None and body["created_at"].endswith("Z")
    assert await balances(api, "alice") == {
        "posted": 7_500,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 7_500,
    }
    assert (await balances(api, "bob"))["posted"] == 2_500
    assert (await balances(api, "bank"))["posted"] == 10_000  # debit-normal: money paid out of the bank

    fetched = await api.get(f"/v1/transfers/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body
    listed = (await api.get("/v1/transfers", params={"account_id": "bob"})).json()
    assert [t["id"] for t in listed["data"]] == [body["id"]] and listed["has_more"] is False

    entries = (await api.get("/v1/accounts/alice/entries")).json()["data"]
    assert [(e["kind"], e["side"], e["posted_amount"], e["balances"]["posted"]) for e in entries] == [
        ("posted", "debit", 2_500, 7_500),
        ("posted", "credit", 10_000, 10_000),
    ]
    account = (await api.get("/v1/accounts/alice")).json()
    assert account["metadata"] == {"owner": "alice"} and account["normal_balance"] == "credit"


async def test_a_hold_is_posted_in_part_and_the_rest_is_released(api: httpx.AsyncClient, tenant_ledger: None) -> None:
    hold = (await api.post("/v1/transfers", json=transfer("alice", "bob", 3_000, pending=True, timeout_s=600))).json()
    assert hold["status"] == "pending" and hold["expires_at"] is not None
    assert await balances(api, "alice") == {
        "posted": 10_000,
        "pending_debits": 3_000,
        "pending_credits": 0,
        "available": 7_000,
    }
    too_much = await api.post("/v1/transfers", json=transfer("alice", "bob", 7_001))
    assert too_much.status_code == 422 and too_much.json()["code"] == "insufficient_funds"

    over = await api.post(f"/v1/transfers/{hold['id']}/post", json={"amount": 3_001})
    assert over.status_code == 422 and over.json()["code"] == "amount_exceeds_pending"
    posted = await api.post(f"/v1/transfers/{hold['id']}/post", json={"amount": 1_000})
    assert posted.status_code == 200
    assert (posted.json()["status"], posted.json()["posted_amount"]) == ("posted", 1_000)
    assert await balances(api, "alice") == {
        "posted": 9_000,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 9_000,
    }
    assert await balances(api, "bob") == {
        "posted": 1_000,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 1_000,
    }
    again = await api.post(f"/v1/transfers/{hold['id']}/post", json={})
    assert again.status_code == 422 and again.json()["code"] == "transfer_not_pending"


async def test_a_voided_hold_gives_the_funds_back(api: httpx.AsyncClient, tenant_ledger: None) -> None:
    hold = (await api.post("/v1/transfers", json=transfer("alice", "bob", 4_000, pending=True))).json()
    voided = await api.post(f"/v1/transfers/{hold['id']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert (await balances(api, "alice"))["available"] == 10_000
    assert (await balances(api, "bob"))["pending_credits"] == 0
    after = await api.post(f"/v1/transfers/{hold['id']}/void")
    assert after.status_code == 422 and after.json()["code"] == "transfer_not_pending"


async def test_a_hold_expires_by_itself_when_its_timeout_passes(api: httpx.AsyncClient, tenant_ledger: None) -> None:
    hold = (await api.post("/v1/transfers", json=transfer("alice", "bob", 600, pending=True, timeout_s=1))).json()
    assert (await balances(api, "alice"))["available"] == 9_400
    deadline = time.monotonic() + 15
    status = hold["status"]
    while status == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = (await api.get(f"/v1/transfers/{hold['id']}")).json()["status"]
    assert status == "expired"
    assert (await balances(api, "alice"))["available"] == 10_000
    kinds = [e["kind"] for e in (await api.get("/v1/accounts/bob/entries")).json()["data"]]
    assert kinds == ["expired", "pending"]
    late = await api.post(f"/v1/transfers/{hold['id']}/post", json={})
    assert late.status_code == 422 and late.json()["code"] == "transfer_not_pending"


async def test_the_balance_as_of_a_past_instant_is_the_balance_then(api: httpx.AsyncClient) -> None:
    await api.post("/v1/transfers", json=transfer("alice", "bob", 1_000))
    await api.post("/v1/transfers", json=transfer("alice", "bob", 2_000))
    entries = (await api.get("/v1/accounts/bob/entries")).json()["data"]
    first, second = entries[1], entries[0]
    at_first = (await api.get("/v1/accounts/bob/balance", params={"as_of": first["created_at"]})).json()
    assert (at_first["posted"], at_first["available"]) == (1_000, 1_000)
    at_second = (await api.get("/v1/accounts/bob/balance", params={"as_of": second["created_at"]})).json()
    assert at_second["posted"] == 3_000
    before = (await api.get("/v1/accounts/bob/balance", params={"as_of": "2000-01-01T00:00:00Z"})).json()
    assert before["posted"] == 0
    offset = (await api.get("/v1/accounts/bob/balance", params={"as_of": "2000-01-01T02:00:00+02:00"})).json()
    assert offset["as_of"] == "2000-01-01T00:00:00Z"
    now = (await api.get("/v1/accounts/bob/balance")).json()
    assert (now["account_id"], now["currency"], now["posted"]) == ("bob", "USD", 3_000)


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_response(
    api: httpx.AsyncClient, tenant_ledger: None
) -> None:
    key = {"Idempotency-Key": f"pay-{uuid.uuid4()}"}
    first = await api.post("/v1/transfers", json=transfer("alice", "bob", 700), headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    replay = await api.post("/v1/transfers", json=transfer("alice", "bob", 700), headers=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    # Same request with its keys in another order and other whitespace: still the same request.
    reordered = b'{"currency":"USD", "amount":700, "credit_account_id":"bob","debit_account_id":"alice"}'
    again = await api.post("/v1/transfers", content=reordered, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    reused = await api.post("/v1/transfers", json=transfer("alice", "bob", 701), headers=key)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert (await balances(api, "bob"))["posted"] == 700

    failed_key = {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    refused = await api.post("/v1/transfers", json=transfer("alice", "bob", 10**6), headers=failed_key)
    refused_again = await api.post("/v1/transfers", json=transfer("alice", "bob", 10**6), headers=failed_key)
    assert refused.status_code == refused_again.status_code == 422
    assert refused_again.headers["idempotent-replayed"] == "true" and refused_again.content == refused.content


async def test_a_client_chosen_transfer_id_makes_creation_idempotent(
    api: httpx.AsyncClient, tenant_ledger: None
) -> None:
    body = transfer("alice", "bob", 300, id=f"order-{uuid.uuid4().hex[:12]}")
    first = await api.post("/v1/transfers", json=body)
    second = await api.post("/v1/transfers", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    clash = await api.post("/v1/transfers", json={**body, "amount": 301})
    assert clash.status_code == 409 and clash.json()["code"] == "transfer_exists"
    assert (await balances(api, "bob"))["posted"] == 300


async def test_an_atomic_batch_applies_all_of_its_transfers_or_none(
    api: httpx.AsyncClient, tenant_ledger: None
) -> None:
    bad = [transfer("alice", "bob", 4_000), transfer("alice", "bob", 4_000), transfer("alice", "bob", 4_000)]
    refused = await api.post("/v1/transfers/batch", json={"atomic": True, "transfers": bad})
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["code"] == "batch_failed" and [e["index"] for e in problem["errors"]] == [2]
    assert problem["errors"][0]["code"] == "insufficient_funds"
    assert (await balances(api, "bob"))["posted"] == 0
    assert len((await api.get("/v1/transfers", params={"account_id": "bob"})).json()["data"]) == 0

    good = [transfer("alice", "bob", 1_000), transfer("bob", "alice", 400), transfer("alice", "bob", 50)]
    applied = await api.post("/v1/transfers/batch", json={"atomic": True, "transfers": good})
    assert applied.status_code == 201
    assert [(i["index"], i["ok"], i["transfer"]["status"]) for i in applied.json()["data"]] == [
        (0, True, "posted"),
        (1, True, "posted"),
        (2, True, "posted"),
    ]
    assert (await balances(api, "bob"))["posted"] == 650


async def test_a_non_atomic_batch_reports_each_item_on_its_own(api: httpx.AsyncClient, tenant_ledger: None) -> None:
    items = [
        transfer("alice", "bob", 6_000),
        transfer("alice", "bob", 6_000),
        transfer("alice", "nobody", 1),
        transfer("alice", "bob", 4_000),
    ]
    response = await api.post("/v1/transfers/batch", json={"atomic": False, "transfers": items})
    assert response.status_code == 200
    data = response.json()["data"]
    assert [i["ok"] for i in data] == [True, False, False, True]
    assert [i["error"]["code"] for i in data if not i["ok"]] == ["insufficient_funds", "account_not_found"]
    assert (await balances(api, "bob"))["posted"] == 10_000


async def test_every_transfer_change_writes_an_outbox_event(platform_db: Pool, api: httpx.AsyncClient) -> None:
    hold = (await api.post("/v1/transfers", json=transfer("alice", "bob", 10, pending=True))).json()
    await api.post(f"/v1/transfers/{hold['id']}/void")
    tenant = await tenant_id_of(platform_db, api.headers["authorization"].removeprefix("Bearer "))
    rows = await platform_db.fetch(
        "SELECT type FROM outbox WHERE tenant_id = $1 AND aggregate_id = $2 ORDER BY seq", tenant, hold["id"]
    )
    assert [r["type"] for r in rows] == ["TransferPending", "TransferVoided"]
    created = await platform_db.fetchval(
        "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND type = 'AccountCreated'", tenant
    )
    assert created == len(ACCOUNTS)


async def test_lists_are_paged_with_cursors(api: httpx.AsyncClient) -> None:
    for amount in (1, 2, 3):
        await api.post("/v1/transfers", json=transfer("alice", "bob", amount))
    seen: list[int] = []
    cursor = None
    while True:
        params = {"account_id": "bob", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/transfers", params=params)).json()
        seen += [t["amount"] for t in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == [3, 2, 1]
    first = (await api.get("/v1/accounts", params={"limit": "2"})).json()
    rest = (await api.get("/v1/accounts", params={"limit": "2", "cursor": first["next_cursor"]})).json()
    assert [a["id"] for a in first["data"] + rest["data"]] == ["alice", "bank", "bob"]


async def test_a_missing_or_wrong_api_key_is_unauthorized(platform: Platform) -> None:
    async with platform.client("kassa_wrong") as wrong:
        for response in (await wrong.get("/v1/accounts"), await wrong.post("/v1/transfers", json={})):
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"
        anonymous = await wrong.get("/v1/accounts", headers={"Authorization": ""})
        assert anonymous.status_code == 401


async def test_the_openapi_document_lists_every_endpoint(platform: Platform) -> None:
    async with platform.admin() as client:
        document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    expected = {
        "/v1/tenants": {"post"},
        "/v1/accounts": {"get", "post"},
        "/v1/accounts/{id}": {"get"},
        "/v1/accounts/{id}/balance": {"get"},
        "/v1/accounts/{id}/entries": {"get"},
        "/v1/transfers": {"get", "post"},
        "/v1/transfers/{id}": {"get"},
        "/v1/transfers/{id}/post": {"post"},
        "/v1/transfers/{id}/void": {"post"},
        "/v1/transfers/batch": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(document["paths"].get(path, {})), path
    assert "TransferCreate" in document["components"]["schemas"]


def metric_values(text: str) -> dict[str, float]:
    """Series (name with labels) to value, from a Prometheus text exposition."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


async def test_health_readiness_and_metrics_are_served(platform: Platform, api: httpx.AsyncClient) -> None:
    series = (
        'kassa_http_requests_total{method="POST",route="/v1/transfers",status="201"}',
        'kassa_http_request_duration_seconds_count{method="POST",route="/v1/transfers",status="201"}',
        'kassa_transfers_total{outcome="ok"}',
        'kassa_transfers_total{outcome="insufficient_funds"}',
        'kassa_transactions_total{outcome="ok",product="transaction"}',
    )
    async with platform.admin() as client:
        before = metric_values((await client.get("/metrics")).text)
        # This test's own requests, measured as the change they make (not the fixture's transfer).
        assert (await api.post("/v1/transfers", json=transfer("alice", "bob", 1))).status_code == 201
        assert (await api.post("/v1/transfers", json=transfer("bob", "alice", 10**9))).status_code == 422
        legs = [transfer("alice", "bob", 1), transfer("alice", "bank", 1)]
        assert (await api.post("/v1/transactions", json={"postings": legs})).status_code == 201
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok"
        after = metric_values((await client.get("/metrics")).text)
    change = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in series}
    assert change == dict.fromkeys(series, 1.0), change
    # The three ledger commands went through the batcher (the expiry sweeper may add its own).
    batched = after["kassa_ledger_batch_size_sum"] - before.get("kassa_ledger_batch_size_sum", 0.0)
    assert batched >= 3, batched
    assert 'kassa_db_pool_connections{state="max"}' in after


async def test_metrics_include_the_event_backbone_of_the_worker_process(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    await api.post("/v1/transfers/batch", json={"transfers": [transfer("alice", "bob", 1)]})
    wanted = ("kassa_events_published_total", "kassa_outbox_lag_seconds", "kassa_consumer_lag", "kassa_dlq_size")
    deadline = time.monotonic() + 20
    async with platform.admin() as client:
        while True:
            text = (await client.get("/metrics")).text
            missing = [name for name in wanted if name not in text]
            published = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("kassa_events_published_total")
            )
            if (not missing and published > 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    assert not missing, missing
    assert published > 0, "the relay's counter (worker process) reaches the API's /metrics"


async def test_every_request_gets_an_x_request_id_and_one_json_log_line(platform: Platform) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    async with platform.admin() as client:
        echoed = await client.get("/healthz", headers={"X-Request-Id": request_id})
        generated = await client.get("/healthz")
        bad = await client.get("/healthz", headers={"X-Request-Id": "not valid!"})
    assert echoed.headers["x-request-id"] == request_id
    assert generated.headers["x-request-id"] and bad.headers["x-request-id"] != "not valid!"
    deadline = time.monotonic() + 10
    lines: list[dict[str, object]] = []
    while not lines and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        lines = [json.loads(line) for line in platform.log_lines() if request_id in line]
    assert len(lines) == 1
    line = lines[0]
    assert (line["request_id"], line["method"], line["path"], line["status"]) == (request_id, "GET", "/healthz", 200)
    assert isinstance(line["trace_id"], str) and isinstance(line["duration_ms"], float)
    assert line["level"] == "info" and str(line["ts"]).endswith("Z")


async def test_the_admin_key_creates_tenants_and_a_tenant_key_cannot(platform: Platform) -> None:
    async with platform.admin() as admin:
        created = await admin.post("/v1/tenants", json={"name": "acme"}, headers={"Idempotency-Key": str(uuid.uuid4())})
        accounts_as_admin = await admin.get("/v1/accounts")
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "acme" and body["api_key"]["secret"] and body["id"]
    assert accounts_as_admin.status_code == 403
    async with platform.client(body["api_key"]["secret"]) as tenant:
        refused = await tenant.post("/v1/tenants", json={"name": "sneaky"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert (await tenant.get("/v1/accounts")).json()["data"] == []
