"""Bad input on the operator routes added last: `PUT /v1/compliance/limits` and
`POST /v1/adjustments`. Oversized bodies, deep nesting, unicode edge cases, huge integers and
far past or future timestamps are each a clear 4xx problem that changes nothing: no limit
version, no audit record, no transaction, no balance."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from kassa.shared.limits import request_body_bytes_max
from support.server import create_accounts, fund, new_tenant, send_head_only, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
L = "/v1/compliance/limits"
A = "/v1/adjustments"
LIMIT = {"tier": 0, "direction": "outgoing", "window": "day", "metric": "amount", "max": 50_000}
POSTING = {"debit_account_id": "bank", "credit_account_id": "c1", "amount": 100, "currency": "USD"}
DEEP = b'{"reason":"x","limits":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _j(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


BAD: list[tuple[str, str, bytes, int, str]] = [
    ("limits: max huge", L, _j({"reason": "x", "limits": [{**LIMIT, "max": 10**30}]}), 400, "invalid_request"),
    ("limits: max negative", L, _j({"reason": "x", "limits": [{**LIMIT, "max": -1}]}), 400, "invalid_request"),
    ("limits: tier unknown", L, _j({"reason": "x", "limits": [{**LIMIT, "tier": 3}]}), 400, "invalid_request"),
    (
        "limits: window unicode",
        L,
        _j({"reason": "x", "limits": [{**LIMIT, "window": "d\u0430y"}]}),
        400,
        "invalid_request",
    ),
    ("limits: reason missing", L, _j({"limits": [LIMIT]}), 400, "invalid_request"),
    ("limits: reason with NUL", L, _j({"reason": "a\u0000b", "limits": [LIMIT]}), 400, "invalid_request"),
    ("limits: too many", L, _j({"reason": "x", "limits": [LIMIT] * 31}), 400, "invalid_request"),
    (
        "limits: unknown field",
        L,
        _j({"reason": "x", "limits": [LIMIT], "as_of": "9999-12-31T23:59:59Z"}),
        400,
        "invalid_request",
    ),
    ("limits: nested deeply", L, DEEP, 400, "invalid_request"),
    ("limits: not JSON", L, b"\xff\xfe{", 400, "invalid_request"),
    ("adjustment: no reason", A, _j({"postings": [POSTING]}), 400, "invalid_request"),
    ("adjustment: empty reason", A, _j({"reason": "", "postings": [POSTING]}), 400, "invalid_request"),
    ("adjustment: reason too long", A, _j({"reason": "r" * 501, "postings": [POSTING]}), 400, "invalid_request"),
    (
        "adjustment: amount huge",
        A,
        _j({"reason": "x", "postings": [{**POSTING, "amount": 10**30}]}),
        400,
        "invalid_request",
    ),
    ("adjustment: amount zero", A, _j({"reason": "x", "postings": [{**POSTING, "amount": 0}]}), 400, "invalid_request"),
    ("adjustment: no postings", A, _j({"reason": "x", "postings": []}), 400, "invalid_request"),
    ("adjustment: 11 postings", A, _j({"reason": "x", "postings": [POSTING] * 11}), 400, "invalid_request"),
    (
        "adjustment: account unicode",
        A,
        _j({"reason": "x", "postings": [{**POSTING, "credit_account_id": "c\u0131"}]}),
        400,
        "invalid_request",
    ),
    ("adjustment: id with NUL", A, _j({"id": "a\u0000", "reason": "x", "postings": [POSTING]}), 400, "invalid_request"),
    (
        "adjustment: currency unknown",
        A,
        _j({"reason": "x", "postings": [{**POSTING, "currency": "XXZ"}]}),
        400,
        "invalid_request",
    ),
    (
        "adjustment: far future field",
        A,
        _j({"reason": "x", "postings": [POSTING], "posted_at": "9999-12-31T23:59:59Z"}),
        400,
        "invalid_request",
    ),
    (
        "adjustment: far past field",
        A,
        _j({"reason": "x", "postings": [POSTING], "effective_at": "0001-01-01T00:00:00Z"}),
        400,
        "invalid_request",
    ),
    (
        "adjustment: nested deeply",
        A,
        b'{"reason":"x","metadata":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "invalid_request",
    ),
    (
        "adjustment: unknown account",
        A,
        _j({"reason": "x", "postings": [{**POSTING, "credit_account_id": "ghost"}]}),
        404,
        "account_not_found",
    ),
]


@pytest.fixture(scope="module")
async def operator(platform: Platform, platform_db: Pool) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_accounts(
            client, [{"id": "bank", "currency": "USD", "allow_negative": True}, {"id": "c1", "currency": "USD"}]
        )
        await fund(client, "bank", "c1", 10_000)
        yield client, await tenant_id_of(platform_db, secret)


async def state(pool: Pool, tenant: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM compliance_limit_sets WHERE tenant_id = $1) AS limit_sets,"
        " (SELECT count(*) FROM audit_log WHERE tenant_id = $1) AS audit,"
        " (SELECT count(*) FROM transactions WHERE tenant_id = $1) AS transactions,"
        " (SELECT sum(credits_posted - debits_posted + credits_pending - debits_pending)"
        "  FROM accounts WHERE tenant_id = $1 AND id = 'c1') AS c1",
        tenant,
    )
    assert row is not None
    return dict(row)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
async def test_bad_input_on_operator_routes_is_a_clear_4xx_that_changes_nothing(
    case: tuple[str, str, bytes, int, str], operator: tuple[httpx.AsyncClient, str], platform_db: Pool
) -> None:
    _, path, body, status, code = case
    client, tenant = operator
    method = "PUT" if path == L else "POST"
    before = await state(platform_db, tenant)
    response = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.headers.get("content-type")) == (status, "application/problem+json"), (
        response.text[:300]
    )
    assert response.json()["code"] == code
    assert await state(platform_db, tenant) == before


@pytest.mark.parametrize("path", [L, A])
async def test_an_oversized_body_on_operator_routes_is_refused_with_413_and_changes_nothing(
    path: str, platform: Platform, operator: tuple[httpx.AsyncClient, str], platform_db: Pool
) -> None:
    client, tenant = operator
    before = await state(platform_db, tenant)
    head = {
        "Authorization": client.headers["authorization"],
        "Content-Type": "application/json",
        "Content-Length": str(request_body_bytes_max + 1),
    }
    status, _, _ = await send_head_only(platform, "PUT" if path == L else "POST", path, head)
    assert status == 413
    assert await state(platform_db, tenant) == before


async def test_the_good_requests_of_these_cases_are_accepted(operator: tuple[httpx.AsyncClient, str]) -> None:
    """The bad cases above differ from these in one field each: proof that the refusals are
    about that field, not about a fixture that refuses everything."""
    client, _ = operator
    limits = await client.put(L, json={"reason": "x", "limits": [LIMIT]})
    assert limits.status_code == 200, limits.text
    adjusted = await client.post(A, json={"reason": "x", "postings": [POSTING]})
    assert adjusted.status_code == 201, adjusted.text
