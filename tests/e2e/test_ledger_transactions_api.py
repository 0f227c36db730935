"""Multi-leg transactions over HTTP: create, read, list, post in part, void, expire, errors naming the posting."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from kassa.shared.limits import transaction_postings_max
from support.server import balances, ledger_tenant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

ACCOUNTS: list[dict[str, object]] = [
    {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True},
    {"id": "buyer", "currency": "USD"},
    {"id": "fee", "currency": "USD"},
    {"id": "artist", "currency": "USD"},
    {"id": "label", "currency": "USD"},
    {"id": "eur.pool", "currency": "EUR", "allow_negative": True},
    {"id": "eur.buyer", "currency": "EUR"},
]


@pytest.fixture
async def api(platform: Platform, platform_db: Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh tenant whose buyer has 10,000 USD; its ledger is checked after the test."""
    async with ledger_tenant(platform, platform_db, ACCOUNTS, 10_000) as client:
        yield client


def leg(debit: str, credit: str, amount: int, currency: str = "USD") -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": currency}


FIVE = [
    leg("buyer", "fee", 150),
    leg("buyer", "artist", 500),
    leg("buyer", "label", 350),
    leg("eur.pool", "eur.buyer", 920, "EUR"),
    leg("buyer", "bank", 1_000),
]


async def test_a_five_posting_transaction_moves_every_leg_and_is_read_back(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/transactions", json={"postings": FIVE, "reference": "order-7", "metadata": {"k": 1}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "posted" and body["pending"] is False and body["reference"] == "order-7"
    assert [(p["index"], p["amount"], p["posted_amount"]) for p in body["postings"]] == [
        (i, p["amount"], p["amount"]) for i, p in enumerate(FIVE)
    ]
    assert (await api.get(f"/v1/transactions/{body['id']}")).json() == body
    assert (await balances(api, "buyer"))["posted"] == 10_000 - 2_000
    assert (await balances(api, "eur.buyer"))["posted"] == 920
    entries = (await api.get("/v1/accounts/artist/entries")).json()["data"]
    assert [(e["transaction_id"], e["posting_index"], e["transfer_id"]) for e in entries] == [(body["id"], 1, None)]
    listed = (await api.get("/v1/transactions", params={"account_id": "eur.buyer"})).json()
    assert [t["id"] for t in listed["data"]] == [body["id"]] and listed["has_more"] is False


async def test_a_failing_posting_is_named_by_its_index_and_nothing_moves(api: httpx.AsyncClient) -> None:
    postings = [leg("buyer", "fee", 4_000), leg("buyer", "artist", 5_000), leg("buyer", "label", 2_000)]
    refused = await api.post("/v1/transactions", json={"postings": postings})
    problem = refused.json()
    assert (refused.status_code, problem["code"], problem["posting_index"]) == (422, "insufficient_funds", 2)
    assert problem["detail"].startswith("postings[2]: ")
    unknown = await api.post("/v1/transactions", json={"postings": [leg("buyer", "fee", 1), leg("fee", "ghost", 1)]})
    assert (unknown.status_code, unknown.json()["code"], unknown.json()["posting_index"]) == (
        404,
        "account_not_found",
        1,
    )
    mismatch = await api.post("/v1/transactions", json={"postings": [leg("buyer", "eur.buyer", 1)]})
    assert (mismatch.json()["code"], mismatch.json()["posting_index"]) == ("currency_mismatch", 0)
    currency = await api.post(
        "/v1/transactions", json={"postings": [leg("buyer", "fee", 1), leg("buyer", "fee", 1, "XXX")]}
    )
    assert (currency.status_code, currency.json()["posting_index"]) == (400, 1)
    assert (await balances(api, "buyer"))["posted"] == 10_000
    assert (await api.get("/v1/transactions")).json()["data"] == []


async def test_bad_transaction_input_is_a_400_and_unknown_ids_a_404(api: httpx.AsyncClient) -> None:
    too_many = {"postings": [leg("buyer", "fee", 1)] * (transaction_postings_max + 1)}
    body: dict[str, Any]
    for body in ({"postings": []}, too_many, {"postings": [leg("buyer", "fee", 0)]}, {"postings": FIVE, "x": 1}):
        response = await api.post("/v1/transactions", json=body)
        assert (response.status_code, response.json()["code"]) == (400, "invalid_request"), body
    timeout_only = await api.post("/v1/transactions", json={"postings": FIVE, "timeout_s": 5})
    assert timeout_only.status_code == 400 and "pending" in timeout_only.json()["detail"]
    for path in ("/v1/transactions/ghost", "/v1/transactions/a%00b"):
        missing = await api.get(path)
        assert (missing.status_code, missing.json()["code"]) == (404, "transaction_not_found")
    ghost = await api.post("/v1/transactions/ghost/void")
    assert ghost.status_code == 404


async def test_a_pending_transaction_posts_in_part_per_posting_and_then_cannot_be_voided(
    api: httpx.AsyncClient,
) -> None:
    hold = await api.post(
        "/v1/transactions", json={"postings": [leg("buyer", "fee", 100), leg("buyer", "artist", 900)], "pending": True}
    )
    assert hold.status_code == 201 and hold.json()["status"] == "pending" and hold.json()["timeout_s"] == 3600
    held_id = hold.json()["id"]
    assert (await balances(api, "buyer"))["available"] == 9_000
    wrong_count = await api.post(f"/v1/transactions/{held_id}/post", json={"amounts": [1]})
    assert (wrong_count.status_code, wrong_count.json()["code"]) == (422, "posting_amounts_mismatch")
    too_much = await api.post(f"/v1/transactions/{held_id}/post", json={"amounts": [100, 901]})
    assert (too_much.json()["code"], too_much.json()["posting_index"]) == ("amount_exceeds_pending", 1)
    posted = await api.post(f"/v1/transactions/{held_id}/post", json={"amounts": [None, 400]})
    assert posted.status_code == 200, posted.text
    assert [p["posted_amount"] for p in posted.json()["postings"]] == [100, 400]
    assert (await balances(api, "buyer")) == {
        "posted": 9_500,
        "available": 9_500,
        "pending_debits": 0,
        "pending_credits": 0,
    }
    late = await api.post(f"/v1/transactions/{held_id}/void")
    assert (late.status_code, late.json()["code"]) == (422, "transaction_not_pending")


async def test_a_voided_and_an_expired_transaction_release_every_hold(api: httpx.AsyncClient) -> None:
    postings = [leg("buyer", "fee", 100), leg("buyer", "label", 200)]
    void_me = (await api.post("/v1/transactions", json={"postings": postings, "pending": True})).json()
    voided = await api.post(f"/v1/transactions/{void_me['id']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    brief = (await api.post("/v1/transactions", json={"postings": postings, "pending": True, "timeout_s": 1})).json()
    deadline = time.monotonic() + 15
    status = brief["status"]
    while status == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = (await api.get(f"/v1/transactions/{brief['id']}")).json()["status"]
    assert status == "expired"
    assert (await balances(api, "buyer"))["available"] == 10_000
    kinds = [e["kind"] for e in (await api.get("/v1/accounts/label/entries")).json()["data"]]
    assert kinds == ["expired", "pending", "voided", "pending"]


async def test_a_retry_with_the_same_idempotency_key_replays_the_transaction(api: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": f"tx-{uuid.uuid4()}"}
    first = await api.post("/v1/transactions", json={"postings": FIVE}, headers=key)
    again = await api.post("/v1/transactions", json={"postings": FIVE}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    reused = await api.post("/v1/transactions", json={"postings": FIVE[:1]}, headers=key)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    by_id = await api.post("/v1/transactions", json={"id": "fixed", "postings": FIVE[:2]})
    same = await api.post("/v1/transactions", json={"id": "fixed", "postings": FIVE[:2]})
    clash = await api.post("/v1/transactions", json={"id": "fixed", "postings": FIVE[:1]})
    assert (by_id.status_code, same.status_code, clash.status_code) == (201, 200, 409)
    assert clash.json()["code"] == "transaction_exists"
    assert (await balances(api, "fee"))["posted"] == 150 * 2


async def test_transaction_lists_are_paged_with_cursors(api: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await api.post("/v1/transactions", json={"postings": [leg("buyer", "fee", 1)]})).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "account_id": "fee", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/transactions", params=params)).json()
        seen += [t["id"] for t in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    everything = (await api.get("/v1/transactions", params={"limit": "10"})).json()["data"]
    assert seen == [t["id"] for t in everything] and len(seen) == 5
