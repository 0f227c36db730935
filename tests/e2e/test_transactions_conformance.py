"""Issue 7 from the outside: what a client of `/v1/transactions` sees for input the docs promise to
name and refuse (found driving `make run` with curl; each test failed before its fix)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

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
]


@pytest.fixture
async def api(platform: Platform, platform_db: Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh tenant (its key has `admin`) whose buyer has 10,000 USD; its ledger is checked after."""
    async with ledger_tenant(platform, platform_db, ACCOUNTS, 10_000) as client:
        yield client


def leg(debit: str, credit: str, amount: Any, currency: str = "USD") -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": currency}


GOOD = [leg("buyer", "fee", 1), leg("buyer", "artist", 2)]
# A third posting that the edge schema (not the domain) refuses, each for another reason.
BAD_THIRD: list[dict[str, Any]] = [
    leg("buyer", "fee", 0),
    leg("buyer", "fee", -5),
    leg("buyer", "fee", 2**63),
    leg("buyer", "fee", 1.5),
    leg("buyer", "fee", "5"),
    leg("x" * 65, "fee", 1),
    leg("buyer", "a\x00b", 1),
    {"debit_account_id": "buyer", "amount": 1, "currency": "USD"},
    {**leg("buyer", "fee", 1), "memo": "unknown field"},
    # A field name that quotes another posting's path cannot move the index msgspec reports.
    {**leg("buyer", "fee", 1), " - at `$.postings[9]`": 1},
]


@pytest.mark.parametrize("route", ["/v1/transactions", "/v1/adjustments"])
async def test_a_schema_error_in_one_posting_names_that_posting_like_every_other_posting_error(
    api: httpx.AsyncClient, route: str
) -> None:
    # docs/ledger.md: "A posting's error names it: "posting_index": i in the problem, postings[i]: …
    # in detail". Before the fix only the domain's checks (an unknown currency) did; an amount of 0
    # or an overlong account id at index 2 was a bare msgspec message without posting_index.
    for bad in BAD_THIRD:
        body: dict[str, Any] = {"postings": [*GOOD, bad]}
        if route == "/v1/adjustments":
            body["reason"] = "conformance"
        refused = await api.post(route, json=body)
        problem = refused.json()
        assert (refused.status_code, refused.headers["content-type"]) == (400, "application/problem+json"), bad
        assert (problem["code"], problem.get("posting_index")) == ("invalid_request", 2), (bad, problem)
        assert problem["detail"].startswith("postings[2]: ") and "$.postings[2]" in problem["detail"], problem
    # An error outside the postings names none.
    for body in ({"postings": GOOD, "memo": 1}, {"postings": GOOD, "pending": True, "timeout_s": 0}, {"postings": []}):
        problem = (await api.post("/v1/transactions", json=body)).json()
        assert problem["code"] == "invalid_request" and "posting_index" not in problem, problem
    assert (await balances(api, "buyer"))["posted"] == 10_000
    assert (await api.get("/v1/transactions", params={"account_id": "fee"})).json()["data"] == []


async def test_a_bad_amount_when_posting_a_pending_transaction_names_its_posting(api: httpx.AsyncClient) -> None:
    hold = await api.post("/v1/transactions", json={"postings": GOOD, "pending": True})
    assert hold.status_code == 201, hold.text
    held_id = hold.json()["id"]
    for amounts in ([1, -1], [1, 1.5], [1, "2"], [1, 2**63]):
        refused = await api.post(f"/v1/transactions/{held_id}/post", json={"amounts": amounts})
        problem = refused.json()
        assert (refused.status_code, problem["code"], problem.get("posting_index")) == (400, "invalid_request", 1), (
            amounts,
            problem,
        )
        assert problem["detail"].startswith("postings[1]: "), problem
    still = (await api.get(f"/v1/transactions/{held_id}")).json()
    assert still["status"] == "pending" and (await balances(api, "buyer"))["available"] == 10_000 - 3
    assert (await api.post(f"/v1/transactions/{held_id}/void")).status_code == 200


async def test_a_json_body_is_read_whatever_its_content_type_says(api: httpx.AsyncClient) -> None:
    # Kept lenient on purpose: `curl -d` labels a body form-encoded, and the API authenticates with a bearer key
    # (no cookies, so no cross-site form posts to guard against); a body that is not JSON is a 400 either way.
    body = json.dumps({"postings": GOOD}).encode()
    labels: list[dict[str, str]] = [{}, {"Content-Type": "application/json; charset=utf-8"}]
    labels += [{"Content-Type": "Application/JSON"}, {"Content-Type": "application/x-www-form-urlencoded"}]
    labels += [{"Content-Type": "text/plain"}]
    for headers in labels:
        created = await api.post("/v1/transactions", content=body, headers=headers)
        assert created.status_code == 201, (headers, created.text)
    refused = await api.post("/v1/transactions", content=b"postings=1", headers=labels[3])
    assert (refused.status_code, refused.headers["content-type"]) == (400, "application/problem+json"), refused.text
    # An empty body (a void, a post of the whole hold) is not refused for its label.
    hold = await api.post("/v1/transactions", json={"postings": GOOD, "pending": True})
    posted = await api.post(f"/v1/transactions/{hold.json()['id']}/post", headers={"Content-Type": "text/plain"})
    assert posted.status_code == 200 and posted.json()["status"] == "posted", posted.text
    assert (await balances(api, "buyer"))["posted"] == 10_000 - (len(labels) + 1) * 3


async def test_the_openapi_problem_documents_the_posting_index_the_problems_carry(api: httpx.AsyncClient) -> None:
    problem = (await api.get("/openapi.json")).json()["components"]["schemas"]["Problem"]
    assert problem["properties"]["posting_index"] == {
        "description": "the failing posting's index",
        "type": "integer",
        "minimum": 0,
    }
    assert "posting_index" not in problem["required"]  # only a posting's error has one
