"""API keys over HTTP on a platform with two API processes sharing rate limits through a real
Redis: scoped keys, revocation that holds in every process the moment DELETE answers, rotation
with an overlap, last use, the audit log, and 429 with Retry-After and RateLimit-* headers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from support.server import new_tenant, own_platform

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support.server import Platform
    from support.tools_redis import RedisServer

pytestmark = pytest.mark.e2e
WARM_REQUESTS = 20  # enough that both API processes have the key cached (each answers some)


@pytest.fixture(scope="module")
def redis_platform(redis_server_process: RedisServer) -> Iterator[Platform]:
    with own_platform("kassa-keys-", {"KASSA_REDIS_URL": redis_server_process.url}) as running:
        yield running


async def test_a_scoped_key_does_what_it_may_and_is_refused_the_rest(redis_platform: Platform) -> None:
    async with redis_platform.client(await new_tenant(redis_platform)) as owner:
        created = await owner.post("/v1/api-keys", json={"scopes": ["accounts:write"], "name": "svc"})
        assert created.status_code == 201, created.text
        body = created.json()
        secret, key_id = body["secret"], body["id"]
        assert body["key"]["scopes"] == ["accounts:write"] and body["key"]["status"] == "active"
        listed = await owner.get("/v1/api-keys")
        assert key_id in listed.text and secret not in listed.text and "secret" not in listed.text
    async with redis_platform.client(secret) as svc:
        made = await svc.post("/v1/accounts", json={"currency": "EUR"})
        assert made.status_code == 201, made.text
        assert made.headers["ratelimit-limit"] and made.headers["ratelimit-remaining"]
        assert (await svc.get(f"/v1/accounts/{made.json()['id']}")).status_code == 200  # write implies read
        refused = await svc.post(
            "/v1/transfers", json={"debit_account_id": "a", "credit_account_id": "b", "amount": 1, "currency": "EUR"}
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden" and refused.json()["scope"] == "transactions:write"
        assert (await svc.get("/v1/api-keys")).json()["scope"] == "admin"


async def test_revocation_holds_in_every_api_process_once_delete_answers(redis_platform: Platform) -> None:
    async with redis_platform.client(await new_tenant(redis_platform)) as owner:
        created = (await owner.post("/v1/api-keys", json={"scopes": ["accounts:read"]})).json()
        async with redis_platform.client(created["secret"]) as victim:
            warm = await asyncio.gather(*(victim.get("/v1/accounts") for _ in range(WARM_REQUESTS)))
            assert {r.status_code for r in warm} == {200}
            revoked = await owner.delete(f"/v1/api-keys/{created['id']}")
            assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
            after = await asyncio.gather(*(victim.get("/v1/accounts") for _ in range(WARM_REQUESTS)))
            assert {r.status_code for r in after} == {401}, [r.text for r in after if r.status_code != 401]
        again = await owner.delete(f"/v1/api-keys/{created['id']}")
        assert again.status_code == 200  # revoking twice changes nothing
        log = (await owner.get("/v1/audit-log")).json()["data"]
        assert [r["action"] for r in log if r["target_id"] == created["id"]] == ["api_key.revoked", "api_key.created"]
        assert created["secret"] not in str(log)
        about = (await owner.get("/v1/audit-log", params={"target_id": created["id"]})).json()["data"]
        assert [r["action"] for r in about] == ["api_key.revoked", "api_key.created"]
        revocations = (await owner.get("/v1/audit-log", params={"action": "api_key.revoked"})).json()["data"]
        assert [r["target_id"] for r in revocations] == [created["id"]]


async def test_rotation_keeps_the_old_key_for_the_overlap_and_records_last_use(redis_platform: Platform) -> None:
    async with redis_platform.client(await new_tenant(redis_platform)) as owner:
        old = (await owner.post("/v1/api-keys", json={"scopes": ["accounts:read"], "name": "ci"})).json()
        rotated = await owner.post(f"/v1/api-keys/{old['id']}/rotate", json={"overlap_s": 600})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["key"]["rotated_from"] == old["id"] and new["key"]["name"] == "ci"
        assert new["previous"]["expires_at"] is not None and new["previous"]["status"] == "active"
        for secret in (old["secret"], new["secret"]):
            async with redis_platform.client(secret) as client:
                assert (await client.get("/v1/accounts")).status_code == 200
        # Last use is written off the request path: wait for it on the key's own record.
        for _ in range(200):
            seen = (await owner.get(f"/v1/api-keys/{new['id']}")).json()["last_used_at"]
            if seen is not None:
                break
            await asyncio.sleep(0.05)
        assert seen is not None
        gone = await owner.post(f"/v1/api-keys/{old['id']}/rotate", json={"overlap_s": 0})
        assert gone.status_code == 200
        async with redis_platform.client(old["secret"]) as client:
            assert (await client.get("/v1/accounts")).status_code == 401


async def test_a_key_past_its_rate_limit_gets_429_with_retry_after_and_ratelimit_headers(
    redis_platform: Platform, redis_server_process: RedisServer
) -> None:
    from redis import asyncio as aioredis

    async with redis_platform.client(await new_tenant(redis_platform)) as owner:
        created = await owner.post(
            "/v1/api-keys", json={"scopes": ["accounts:read"], "rate_limit_per_s": 1, "rate_limit_burst": 2}
        )
        key = created.json()
    async with redis_platform.client(key["secret"]) as client:
        responses = []
        for _ in range(20):  # a burst of 2 at 1/s: far fewer than 20 fit
            responses.append(await client.get("/v1/accounts"))
            if responses[-1].status_code == 429:
                break
    limited = responses[-1]
    assert limited.status_code == 429, [r.status_code for r in responses]
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-limit"] == "2" and limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) >= 1
    assert all(r.headers["ratelimit-limit"] == "2" for r in responses)
    # The bucket lives in Redis, where every API process takes its tokens.
    redis = aioredis.from_url(redis_server_process.url)
    try:
        assert await redis.exists(f"kassa:ratelimit:{key['id']}") == 1
    finally:
        await redis.aclose()


async def test_without_redis_each_process_limits_the_key_with_its_own_bucket(platform: Platform) -> None:
    """The default platform (no KASSA_REDIS_URL): buckets live in each API process, and answers
    after admission (a 404 here) carry the budget too."""
    async with platform.client(await new_tenant(platform)) as owner:
        created = await owner.post(
            "/v1/api-keys", json={"scopes": ["accounts:read"], "rate_limit_per_s": 1, "rate_limit_burst": 1}
        )
        key = created.json()
    async with platform.client(key["secret"]) as client:
        responses = []
        for _ in range(20):
            responses.append(await client.get("/v1/accounts/nothing-here"))
            if responses[-1].status_code == 429:
                break
    assert responses[-1].status_code == 429, [r.status_code for r in responses]
    assert responses[-1].json()["code"] == "rate_limited" and int(responses[-1].headers["retry-after"]) >= 1
    assert {r.status_code for r in responses[:-1]} == {404}
    assert all(r.headers["ratelimit-limit"] == "1" and r.headers["ratelimit-remaining"] == "0" for r in responses)
