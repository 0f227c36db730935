"""Bad input of every kind gets a 4xx problem+json with a code and trace id, never a 500, and changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from kassa.shared.limits import (
    batch_transfers_max,
    hold_timeout_s_max,
    idempotency_key_chars_max,
    metadata_bytes_max,
    metadata_keys_max,
    page_limit_max,
    query_value_chars_max,
    reference_chars_max,
    request_body_bytes_max,
)
from support.server import create_accounts, new_tenant, send_head_only, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

GOOD = {"debit_account_id": "src", "credit_account_id": "dst", "amount": 5, "currency": "USD"}


def with_(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def without(name: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != name}).encode()


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    status: int = 400
    code: str = "invalid_request"
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    admin: bool = False


T = "/v1/transfers"
W = "/v1/webhook-endpoints"
CASES = [
    # Amounts
    Case("amount zero", "POST", T, with_(amount=0)),
    Case("amount negative", "POST", T, with_(amount=-1)),
    Case("amount 2^63", "POST", T, with_(amount=2**63)),
    Case(
        "amount 10^30",
        "POST",
        T,
        b'{"debit_account_id":"src","credit_account_id":"dst","amount":1' + b"0" * 30 + b',"currency":"USD"}',
    ),
    Case("amount fractional", "POST", T, with_(amount=1.5)),
    Case("amount integral float", "POST", T, with_(amount=10.0)),
    Case("amount string", "POST", T, with_(amount="10")),
    Case("amount boolean", "POST", T, with_(amount=True)),
    Case("amount null", "POST", T, with_(amount=None)),
    Case("amount missing", "POST", T, without("amount")),
    # Other fields
    Case("unknown field", "POST", T, with_(note="hi")),
    Case("account id of wrong type", "POST", T, with_(debit_account_id=123)),
    Case("account id with a space", "POST", T, with_(debit_account_id="a b")),
    Case("account id too long", "POST", T, with_(credit_account_id="x" * 65)),
    Case("transfer id with a slash", "POST", T, with_(id="a/b")),
    # `$` matches before a final newline: these passed the id check and reached the database (500).
    Case("transfer id ending in a newline", "POST", T, with_(id="abc\n")),
    Case("debit account id ending in a newline", "POST", T, with_(debit_account_id="src\n")),
    Case("currency ending in a newline", "POST", T, with_(currency="USD\n")),
    Case("currency lower case", "POST", T, with_(currency="usd")),
    Case("currency unknown", "POST", T, with_(currency="XXX"), code="invalid_request"),
    Case("currency of other accounts", "POST", T, with_(currency="EUR"), status=422, code="currency_mismatch"),
    Case(
        "same account twice", "POST", T, with_(credit_account_id="src"), status=422, code="accounts_must_be_different"
    ),
    Case("unknown account", "POST", T, with_(credit_account_id="ghost"), status=404, code="account_not_found"),
    Case("pending not a boolean", "POST", T, with_(pending="yes")),
    Case("timeout zero", "POST", T, with_(pending=True, timeout_s=0)),
    Case("timeout too long", "POST", T, with_(pending=True, timeout_s=hold_timeout_s_max + 1)),
    Case("timeout on a posted transfer", "POST", T, with_(timeout_s=10)),
    Case("reference too long", "POST", T, with_(reference="r" * (reference_chars_max + 1))),
    Case("reference with NUL", "POST", T, with_(reference="a\u0000b")),
    Case("metadata not an object", "POST", T, with_(metadata=[1, 2])),
    Case("metadata too many keys", "POST", T, with_(metadata={str(i): i for i in range(metadata_keys_max + 1)})),
    Case("metadata too large", "POST", T, with_(metadata={"k": "v" * metadata_bytes_max})),
    Case("metadata key with NUL", "POST", T, with_(metadata={"a\u0000": 1})),
    Case("metadata value with NUL", "POST", T, with_(metadata={"a": ["\u0000"]})),
    Case("number beyond float range in metadata", "POST", T, b'{"amount":5,"metadata":{"k":1e400}}'),
    # The body itself
    Case("malformed JSON", "POST", T, b'{"amount": '),
    Case("trailing garbage", "POST", T, with_() + b"}"),
    Case("empty body", "POST", T, b""),
    Case("JSON array", "POST", T, b"[]"),
    Case("JSON string", "POST", T, b'"transfer"'),
    Case(
        "invalid UTF-8",
        "POST",
        T,
        b'{"debit_account_id":"sr\xffc","credit_account_id":"dst","amount":5,"currency":"USD"}',
    ),
    Case("lone surrogate escape", "POST", T, with_(reference="\ud800")),
    Case("deeply nested", "POST", T, b'{"metadata":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001),
    Case(
        "idempotency key too long",
        "POST",
        T,
        with_(),
        headers={"Idempotency-Key": "k" * (idempotency_key_chars_max + 1)},
    ),
    Case("idempotency key empty", "POST", T, with_(), headers={"Idempotency-Key": ""}),
    # Batches
    Case("batch empty", "POST", f"{T}/batch", b'{"transfers":[]}'),
    Case(
        "batch too large", "POST", f"{T}/batch", json.dumps({"transfers": [GOOD] * (batch_transfers_max + 1)}).encode()
    ),
    # An atomic batch refuses the request for any invalid item, naming it ("transfers[1]: ..."); a
    # non-atomic one answers it alone (test_a_non_atomic_batch_answers_an_invalid_item_alone...).
    Case(
        "batch item invalid",
        "POST",
        f"{T}/batch",
        json.dumps({"atomic": True, "transfers": [GOOD, {**GOOD, "amount": 0}]}).encode(),
    ),
    Case(
        "batch item unknown currency",
        "POST",
        f"{T}/batch",
        json.dumps({"atomic": True, "transfers": [GOOD, {**GOOD, "currency": "ABC"}]}).encode(),
    ),
    Case(
        "batch item id ending in a newline",
        "POST",
        f"{T}/batch",
        json.dumps({"atomic": True, "transfers": [GOOD, {**GOOD, "id": "x\n"}]}).encode(),
    ),
    Case(
        "batch item with NUL",
        "POST",
        f"{T}/batch",
        json.dumps({"atomic": True, "transfers": [GOOD, {**GOOD, "reference": "a\u0000"}]}).encode(),
    ),
    Case("batch items not a list", "POST", f"{T}/batch", b'{"transfers": {"0": {}}}'),
    Case("batch atomic not a boolean", "POST", f"{T}/batch", json.dumps({"atomic": 1, "transfers": [GOOD]}).encode()),
    Case("batch unknown field", "POST", f"{T}/batch", json.dumps({"transfers": [GOOD], "x": 1}).encode()),
    # Post and void
    Case("post amount zero", "POST", f"{T}/hold-1/post", b'{"amount":0}'),
    Case("post amount string", "POST", f"{T}/hold-1/post", b'{"amount":"1"}'),
    Case("post unknown field", "POST", f"{T}/hold-1/post", b'{"amount":1,"final":true}'),
    Case(
        "post more than held", "POST", f"{T}/hold-1/post", b'{"amount":101}', status=422, code="amount_exceeds_pending"
    ),
    Case("post unknown transfer", "POST", f"{T}/ghost/post", b"{}", status=404, code="transfer_not_found"),
    Case("post id with NUL", "POST", f"{T}/a%00b/post", b"{}", status=404, code="transfer_not_found"),
    Case("void id with NUL", "POST", f"{T}/a%00b/void", status=404, code="transfer_not_found"),
    Case("void id too long", "POST", f"{T}/{'v' * 65}/void", status=404, code="transfer_not_found"),
    # Accounts
    Case("account currency unknown", "POST", "/v1/accounts", b'{"currency":"ZZZ"}', code="invalid_request"),
    Case("account normal side unknown", "POST", "/v1/accounts", b'{"currency":"USD","normal_balance":"sideways"}'),
    Case("account allow_negative a string", "POST", "/v1/accounts", b'{"currency":"USD","allow_negative":"no"}'),
    Case("account id invalid", "POST", "/v1/accounts", b'{"currency":"USD","id":"\xc3\xa9t\xc3\xa9"}'),
    Case("account id ending in a newline", "POST", "/v1/accounts", b'{"currency":"USD","id":"abc\\n"}'),
    Case("account id in path ending in a newline", "GET", "/v1/accounts/src%0A", status=404, code="account_not_found"),
    Case("account metadata with NUL", "POST", "/v1/accounts", b'{"currency":"USD","metadata":{"k":"\\u0000"}}'),
    Case("account exists", "POST", "/v1/accounts", b'{"currency":"USD","id":"src"}', status=409, code="account_exists"),
    Case("account id with NUL", "GET", "/v1/accounts/a%00b", status=404, code="account_not_found"),
    Case("account unknown", "GET", "/v1/accounts/nope", status=404, code="account_not_found"),
    Case("balance of id with NUL", "GET", "/v1/accounts/%00/balance", status=404, code="account_not_found"),
    Case("entries of id with NUL", "GET", "/v1/accounts/%00/entries", status=404, code="account_not_found"),
    Case("transfer id with NUL", "GET", f"{T}/%00", status=404, code="transfer_not_found"),
    # Query parameters
    Case("limit zero", "GET", "/v1/accounts", params={"limit": "0"}),
    Case("limit too large", "GET", "/v1/accounts", params={"limit": str(page_limit_max + 1)}),
    Case("limit negative", "GET", T, params={"limit": "-1"}),
    Case("limit not a number", "GET", T, params={"limit": "ten"}),
    Case("limit superscript digit", "GET", "/v1/accounts/src/entries", params={"limit": "\u00b2"}),
    Case("cursor not base64", "GET", "/v1/accounts", params={"cursor": "%%%"}),
    Case("cursor decoding to NUL", "GET", "/v1/accounts", params={"cursor": "YQA"}),
    Case("cursor not a sequence", "GET", T, params={"cursor": "YWJj"}),
    Case("cursor beyond bigint", "GET", T, params={"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}),
    Case("cursor superscript digit", "GET", "/v1/accounts/src/entries", params={"cursor": "wrI"}),
    Case("account filter with NUL", "GET", T, params={"account_id": "a\u0000"}),
    Case("account filter ending in a newline", "GET", T, params={"account_id": "src\n"}),
    # Every query value of every route goes through one check: NUL and control characters are a 400.
    Case("unknown query parameter with NUL", "GET", "/v1/accounts", params={"x": "a\u0000"}),
    Case("query parameter name with NUL", "GET", "/v1/accounts", params={"a\u0000": "1"}),
    Case("query value too long", "GET", "/v1/accounts", params={"x": "v" * (query_value_chars_max + 1)}),
    Case("as_of with NUL", "GET", "/v1/accounts/src/balance", params={"as_of": "2024-01-01T00:00:00Z\u0000"}),
    # Webhook endpoints and notifications: the same id checks as the ledger routes (were 500s).
    Case("webhook endpoint id with NUL", "GET", f"{W}/a%00b", status=404, code="webhook_endpoint_not_found"),
    Case("webhook endpoint id with newline", "GET", f"{W}/ab%0A", status=404, code="webhook_endpoint_not_found"),
    Case("delete webhook endpoint id with NUL", "DELETE", f"{W}/%00", status=404, code="webhook_endpoint_not_found"),
    Case(
        "rotate webhook secret id with NUL",
        "POST",
        f"{W}/a%00/rotate-secret",
        status=404,
        code="webhook_endpoint_not_found",
    ),
    Case("deliveries of id with NUL", "GET", f"{W}/a%00/deliveries", status=404, code="webhook_endpoint_not_found"),
    Case(
        "deliveries of id too long", "GET", f"{W}/{'w' * 65}/deliveries", status=404, code="webhook_endpoint_not_found"
    ),
    Case("rotate grace superscript digit", "POST", f"{W}/ghost/rotate-secret", params={"grace_s": "\u00b2"}),
    Case("rotate grace too large", "POST", f"{W}/ghost/rotate-secret", params={"grace_s": "9" * 30}),
    Case("webhook list cursor with NUL", "GET", W, params={"cursor": "\u0000"}),
    Case("notifications account with NUL", "GET", "/v1/notifications", params={"account_id": "a\u0000b"}),
    Case("notifications account with newline", "GET", "/v1/notifications", params={"account_id": "src\n"}),
    Case("notifications account missing", "GET", "/v1/notifications"),
    Case("notifications cursor with NUL", "GET", "/v1/notifications", params={"account_id": "src", "cursor": "\u0000"}),
    Case("as_of garbage", "GET", "/v1/accounts/src/balance", params={"as_of": "yesterday"}),
    Case("as_of without zone", "GET", "/v1/accounts/src/balance", params={"as_of": "2024-01-01T00:00:00"}),
    Case("as_of bad month", "GET", "/v1/accounts/src/balance", params={"as_of": "2024-13-01T00:00:00Z"}),
    Case(
        "as_of before year one in UTC", "GET", "/v1/accounts/src/balance", params={"as_of": "0001-01-01T00:00:00+14:00"}
    ),
    # Routing and tenants
    Case("unknown route", "GET", "/v1/nothing", status=404, code="not_found"),
    Case("method not allowed", "DELETE", "/v1/accounts", status=405, code="method_not_allowed"),
    Case("trailing slash", "GET", "/v1/accounts/", status=404, code="not_found", headers={"Host": "evil.example"}),
    Case("trailing slash on a post", "POST", f"{T}/", with_(), status=404, code="not_found"),
    Case("idempotency key with a space", "POST", T, with_(), headers={"Idempotency-Key": "a b"}),
    Case("tenant name empty", "POST", "/v1/tenants", b'{"name":""}', admin=True),
    Case("tenant name too long", "POST", "/v1/tenants", json.dumps({"name": "n" * 201}).encode(), admin=True),
    Case("tenant name with NUL", "POST", "/v1/tenants", b'{"name":"a\\u0000"}', admin=True),
    Case("tenant unknown field", "POST", "/v1/tenants", b'{"name":"a","plan":"gold"}', admin=True),
]


@pytest.fixture(scope="module")
async def ledger(platform: Platform, platform_db: Pool) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A tenant with src (may go negative), dst, and a pending hold `hold-1` of 100."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_accounts(
            client, [{"id": "src", "currency": "USD", "allow_negative": True}, {"id": "dst", "currency": "USD"}]
        )
        hold = await client.post(T, json={**GOOD, "id": "hold-1", "amount": 100, "pending": True})
        assert hold.status_code == 201, hold.text
        yield client, await tenant_id_of(platform_db, secret)


async def snapshot(pool: Pool, tenant: str) -> dict[str, Any]:
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM tenants) AS tenants,"
        " (SELECT count(*) FROM accounts WHERE tenant_id = $1) AS accounts,"
        " (SELECT count(*) FROM transfers WHERE tenant_id = $1) AS transfers,"
        " (SELECT count(*) FROM entries WHERE tenant_id = $1) AS entries,"
        " (SELECT count(*) FROM outbox WHERE tenant_id = $1) AS events,"
        " (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1) AS keys",
        tenant,
    )
    rows = await pool.fetch(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending FROM accounts"
        " WHERE tenant_id = $1 ORDER BY id",
        tenant,
    )
    holds = await pool.fetch("SELECT id, status, posted_amount FROM transfers WHERE tenant_id = $1", tenant)
    assert counts is not None
    return {**dict(counts), "balances": [tuple(r) for r in rows], "transfers": sorted(tuple(r) for r in holds)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_gets_a_clear_4xx_problem_and_changes_nothing(
    case: Case, ledger: tuple[httpx.AsyncClient, str], platform: Platform, platform_db: Pool
) -> None:
    client, tenant = ledger
    before = await snapshot(platform_db, tenant)
    headers = {"Content-Type": "application/json", **case.headers}
    if case.admin:
        headers["Authorization"] = f"Bearer {platform.admin_key}"
    response = await client.request(case.method, case.path, content=case.body, params=case.params, headers=headers)
    assert (response.status_code, response.headers.get("content-type")) == (case.status, "application/problem+json"), (
        response.text[:500]
    )
    problem = response.json()
    assert problem["code"] == case.code
    assert problem["status"] == case.status
    assert isinstance(problem["trace_id"], str) and len(problem["trace_id"]) == 32
    assert problem["type"].startswith("https://") and problem["title"] and problem["detail"]
    assert await snapshot(platform_db, tenant) == before


async def test_an_oversized_body_is_refused_with_413_before_it_is_read(
    ledger: tuple[httpx.AsyncClient, str], platform: Platform, platform_db: Pool
) -> None:
    """Sent over a raw socket: the body is never written, so no connection reset can race the answer."""
    client, tenant = ledger
    before = await snapshot(platform_db, tenant)
    head = {
        "Authorization": client.headers["authorization"],
        "Content-Type": "application/json",
        "Content-Length": str(request_body_bytes_max + 1),
    }
    status, headers, body = await send_head_only(platform, "POST", T, head)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "payload_too_large" and len(problem["trace_id"]) == 32
    assert await snapshot(platform_db, tenant) == before


async def test_a_non_atomic_batch_answers_an_invalid_item_alone_and_applies_its_neighbours(
    platform: Platform, platform_db: Pool
) -> None:
    """Items that once reached a database constraint (an id ending in a newline: 500 for the whole
    batch) or failed decoding are answered one by one; the valid items around them are applied."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_accounts(
            client, [{"id": "src", "currency": "USD", "allow_negative": True}, {"id": "dst", "currency": "USD"}]
        )
        items: list[Any] = [
            {**GOOD, "id": "ok-1"},
            {**GOOD, "id": "abc\n"},
            {**GOOD, "id": "ok-2", "amount": 7},
            {**GOOD, "amount": "1"},
            {**GOOD, "reference": "a\u0000b"},
            "not an object",
            {**GOOD, "id": "ok-3", "amount": 11},
        ]
        response = await client.post(f"{T}/batch", json={"atomic": False, "transfers": items})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [d["index"] for d in data] == list(range(len(items)))
        assert [d["ok"] for d in data] == [True, False, True, False, False, False, True]
        for item in data:
            if not item["ok"]:
                assert item["transfer"] is None
                assert (item["error"]["code"], item["error"]["status"]) == ("invalid_request", 400)
                assert item["error"]["detail"].startswith(f"transfers[{item['index']}]: ")
        assert [d["transfer"]["id"] for d in data if d["ok"]] == ["ok-1", "ok-2", "ok-3"]
        assert (await client.get("/v1/accounts/dst")).json()["balances"]["posted"] == 5 + 7 + 11
        # The same request under an Idempotency-Key is answered, and replayed, the same way.
        again = [{**i, "id": i["id"].replace("ok", "again")} if isinstance(i, dict) and "id" in i else i for i in items]
        headers = {"Idempotency-Key": "batch-with-bad-items"}
        first = await client.post(f"{T}/batch", json={"transfers": again}, headers=headers)
        replay = await client.post(f"{T}/batch", json={"transfers": again}, headers=headers)
        assert first.status_code == replay.status_code == 200, first.text
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == first.json()
        assert (await client.get("/v1/accounts/dst")).json()["balances"]["posted"] == 2 * (5 + 7 + 11)
    tenant = await tenant_id_of(platform_db, secret)
    stored = await platform_db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant)
    assert stored == 6


async def test_a_non_atomic_batch_of_only_invalid_items_applies_nothing(ledger: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = ledger
    response = await client.post(f"{T}/batch", json={"transfers": [{**GOOD, "id": "x\n"}, {"amount": 1}]})
    assert response.status_code == 200, response.text
    assert [(d["ok"], d["error"]["code"]) for d in response.json()["data"]] == [
        (False, "invalid_request"),
        (False, "invalid_request"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/accounts", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/accounts/src", {"GET", "HEAD"}),
        ("GET", "/v1/transfers/batch", None),  # GET /v1/transfers/{id} serves it: not a 405
        ("OPTIONS", "/v1/transfers/batch", {"POST"}),
        ("PATCH", "/v1/webhook-endpoints/x", {"GET", "HEAD", "DELETE"}),
    ],
)
async def test_a_405_lists_every_method_of_the_path_in_allow(
    method: str, path: str, allowed: set[str] | None, ledger: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = ledger
    response = await client.request(method, path)
    if allowed is None:
        assert response.status_code == 404, response.text
        return
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json()["code"] == "method_not_allowed"


async def test_a_trailing_slash_is_a_404_that_never_echoes_the_host(ledger: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = ledger
    for path in ("/v1/accounts/", "/v1/transfers/", "/v1/accounts/src/"):
        response = await client.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 404, (path, response.status_code)
        assert "location" not in response.headers
        assert "evil.example" not in response.text


async def test_the_openapi_document_says_amounts_are_integer_literals(platform: Platform) -> None:
    """401.0 is refused (see the table) and JSON Schema counts it as an integer, so the schema must
    say "integer" and spell the rule out."""
    async with httpx.AsyncClient(base_url=platform.base_url) as client:
        document = (await client.get("/openapi.json")).json()
    amounts = []
    for name, component in document["components"]["schemas"].items():
        for prop, schema in component.get("properties", {}).items():
            if prop == "amount" or prop.endswith("_amount"):
                amounts.append((name, prop, schema))
    inputs = [(n, s) for n, p, s in amounts if n in ("TransferCreate", "TransferPost")]
    assert len(inputs) == 2, amounts
    for name, schema in inputs:
        options = schema.get("anyOf", [schema])
        typed = [o for o in options if o.get("type") != "null"]
        assert [o["type"] for o in typed] == ["integer"], (name, schema)
        assert typed[0]["format"] == "int64" and "401.0" in typed[0]["description"], (name, schema)
    assert all(s.get("type") != "number" for _, _, s in amounts)
    # Every path parameter is the id schema (no NUL, no trailing newline), and every create
    # operation links to the reads of what it created.
    for path, ops in document["paths"].items():
        for op in ops.values():
            for param in op["parameters"]:
                if param["in"] == "path":
                    assert param["schema"]["pattern"] == "^[A-Za-z0-9_.:\\-]{1,64}$", (path, param)
    links = document["paths"]["/v1/accounts"]["post"]["responses"]["201"]["links"]
    assert links["get_account"]["parameters"] == {"id": "$response.body#/id"}
