"""Bad input on the API key and audit routes: oversized bodies, deep nesting, unicode edge cases,
huge integers, far past and future timestamps. Each is a clear 4xx problem and changes nothing:
no key, no audit record, no revocation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from kassa.shared.limits import (
    api_key_name_chars_max,
    api_key_rotation_overlap_s_max,
    api_key_scopes_max,
    page_limit_max,
    rate_limit_per_s_max,
    request_body_bytes_max,
)
from support.server import new_tenant, send_head_only, tenant_id_of

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

GOOD: dict[str, Any] = {"scopes": ["accounts:read"], "name": "ok"}


def with_(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None
    status: int = 400
    code: str = "invalid_request"
    path: str = "/v1/api-keys"
    method: str = "POST"
    params: dict[str, str] = field(default_factory=dict)


K = "/v1/api-keys"
R = "/v1/api-keys/{victim}/rotate"
CASES = [
    # Sizes and shapes
    Case("deep nesting", b'{"scopes":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    Case("not JSON", b"{scopes: admin}"),
    Case("array body", b"[]"),
    Case("unknown field", with_(role="admin")),
    Case("no scopes", with_(scopes=[])),
    Case("too many scopes", with_(scopes=["accounts:read"] * (api_key_scopes_max + 1))),
    Case("unknown scope", with_(scopes=["accounts:delete"])),
    Case("platform scope", with_(scopes=["tenants:write"])),
    Case("scope of wrong type", with_(scopes=[1])),
    Case("scopes as a string", with_(scopes="admin")),
    # Unicode
    Case("lone surrogate", b'{"scopes":["accounts:read"],"name":"\\ud800"}'),
    Case("NUL in name", with_(name="a\u0000b")),
    Case("newline in name", with_(name="a\nb")),
    Case("invalid UTF-8", b'{"scopes":["accounts:read"],"name":"\xff\xfe"}'),
    Case("name too long", with_(name="\U0001f600" * (api_key_name_chars_max + 1))),
    Case("scope with a homoglyph", with_(scopes=["\u0430ccounts:read"])),  # Cyrillic a
    Case("scope with a zero-width joiner", with_(scopes=["accounts:\u200dread"])),
    # Huge integers
    Case("rate of 10^30", b'{"scopes":["accounts:read"],"rate_limit_per_s":1' + b"0" * 30 + b"}"),
    Case("rate above the maximum", with_(rate_limit_per_s=rate_limit_per_s_max + 1)),
    Case("rate zero", with_(rate_limit_per_s=0)),
    Case("negative burst", with_(rate_limit_burst=-1)),
    Case("fractional rate", with_(rate_limit_per_s=1.5)),
    Case("rate as a string", with_(rate_limit_per_s="10")),
    # Timestamps
    Case("expiry far in the past", with_(expires_at="0001-01-01T00:00:00Z"), 422, "api_key_expiry_invalid"),
    Case("expiry in the past", with_(expires_at="2001-01-01T00:00:00Z"), 422, "api_key_expiry_invalid"),
    Case("expiry far in the future", with_(expires_at="9999-12-31T23:59:59Z"), 422, "api_key_expiry_invalid"),
    Case("expiry past year 9999", with_(expires_at="+10000-01-01T00:00:00Z")),
    Case("expiry without a time zone", with_(expires_at="2030-01-01T00:00:00")),
    Case("expiry not a date", with_(expires_at="tomorrow")),
    Case("expiry as epoch integer", with_(expires_at=1_900_000_000)),
    Case("expiry day 32", with_(expires_at="2030-01-32T00:00:00Z")),
    # Rotation
    Case("rotate overlap of 10^30", b'{"overlap_s":1' + b"0" * 30 + b"}", path=R),
    Case(
        "rotate overlap above the maximum",
        json.dumps({"overlap_s": api_key_rotation_overlap_s_max + 1}).encode(),
        path=R,
    ),
    Case("rotate negative overlap", b'{"overlap_s":-1}', path=R),
    Case("rotate expiry in the past", b'{"expires_at":"1970-01-01T00:00:00Z"}', 422, "api_key_expiry_invalid", R),
    Case("rotate deep nesting", b'{"overlap_s":' + b"[" * 100_000 + b"]" * 100_000 + b"}", path=R),
    Case("rotate unknown key", b"{}", 404, "api_key_not_found", "/v1/api-keys/key_doesnotexist/rotate"),
    Case("rotate key id with unicode", b"{}", 404, "api_key_not_found", "/v1/api-keys/key_\u00e9/rotate"),
    # Reads
    Case("get unknown key", None, 404, "api_key_not_found", "/v1/api-keys/key_nope", "GET"),
    Case("revoke unknown key", None, 404, "api_key_not_found", "/v1/api-keys/key_nope", "DELETE"),
    Case("revoke id with NUL", None, 404, "api_key_not_found", "/v1/api-keys/a%00b", "DELETE"),
    Case("list limit too big", None, path=K, method="GET", params={"limit": str(page_limit_max + 1)}),
    Case("list limit huge", None, path=K, method="GET", params={"limit": "9" * 40}),
    Case("list cursor garbage", None, path=K, method="GET", params={"cursor": "%%%"}),
    Case("audit cursor not a number", None, path="/v1/audit-log", method="GET", params={"cursor": "YWJj"}),
    Case(
        "audit cursor huge",
        None,
        path="/v1/audit-log",
        method="GET",
        params={"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
    ),
    Case("audit limit zero", None, path="/v1/audit-log", method="GET", params={"limit": "0"}),
    Case("audit filter too long", None, path="/v1/audit-log", method="GET", params={"target_id": "x" * 3000}),
    Case("audit filter with a newline", None, path="/v1/audit-log", method="GET", params={"action": "a\nb"}),
    Case("audit action not dotted", None, path="/v1/audit-log", method="GET", params={"action": "revoked"}),
    Case("audit target with unicode", None, path="/v1/audit-log", method="GET", params={"target_id": "k\u00e9y"}),
]


async def state(pool: Pool, tenant: str) -> tuple[Any, ...]:
    keys = await pool.fetch("SELECT id, revoked_at, expires_at FROM api_keys WHERE tenant_id = $1 ORDER BY id", tenant)
    audit = await pool.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant)
    return [tuple(r) for r in keys], audit


@pytest.fixture
async def victim(platform: Platform, platform_db: Pool) -> tuple[str, str, str]:
    """A fresh tenant (its first key's secret, its id) and one more key to rotate or revoke."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        key = (await client.post(K, json={"scopes": ["accounts:read"]})).json()["id"]
    return secret, await tenant_id_of(platform_db, secret), key


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_bad_input_on_key_routes_is_a_clear_4xx_that_changes_nothing(
    platform: Platform, platform_db: Pool, victim: tuple[str, str, str], case: Case
) -> None:
    secret, tenant, key = victim
    before = await state(platform_db, tenant)
    async with platform.client(secret) as client:
        response = await client.request(
            case.method,
            case.path.replace("{victim}", key),
            content=case.body,
            params=case.params,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == case.code and problem["trace_id"]
    assert await state(platform_db, tenant) == before


@pytest.mark.parametrize("path", [K, R])
async def test_an_oversized_body_on_key_routes_is_refused_with_413_before_it_is_read(
    platform: Platform, platform_db: Pool, victim: tuple[str, str, str], path: str
) -> None:
    secret, tenant, key = victim
    before = await state(platform_db, tenant)
    headers = {
        "Authorization": f"Bearer {secret}",
        "Content-Type": "application/json",
        "Content-Length": str(request_body_bytes_max + 1),
    }
    status, answered, body = await send_head_only(platform, "POST", path.replace("{victim}", key), headers)
    assert status == 413 and answered["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "payload_too_large"
    assert await state(platform_db, tenant) == before
