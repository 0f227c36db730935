"""With KASSA_REDIS_URL the API workers share one entitlement cache: every connection sees each write at once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis import asyncio as aioredis

from kassa.store.embedded import free_port
from kassa.store.pool import create_pool
from support.ppv import CONTENT_BODY, http_wallets
from support.server import new_tenant, start_platform, stop_platform, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support.server import Platform
    from support.tools_redis import RedisServer

pytestmark = pytest.mark.e2e
CONNECTIONS = 8  # fresh connections after each write: with two workers, both answer


@pytest.fixture(scope="module")
def redis_platform(redis_server_process: RedisServer) -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="kassa-e2e-redis-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    running = start_platform(root / "data", free_port(), {"KASSA_REDIS_URL": redis_server_process.url})
    try:
        yield running
    finally:
        assert stop_platform(running) == 0
        shutil.rmtree(root, ignore_errors=True)


async def answers(platform: Platform, secret: str) -> list[str]:
    found = []
    for _ in range(CONNECTIONS):
        async with platform.client(secret) as fresh:
            response = await fresh.get("/v1/entitlements/check", params={"customer_id": "ann", "content_id": "final"})
            found.append(response.json()["reason"])
    return found


async def test_every_worker_answers_from_the_shared_cache_right_after_each_write(
    redis_platform: Platform, redis_server_process: RedisServer
) -> None:
    secret = await new_tenant(redis_platform)
    owner = await create_pool(redis_platform.database_url, size_max=2)
    try:
        tenant = await tenant_id_of(owner, secret)
        async with redis_platform.client(secret) as client:
            await http_wallets(client, {"ann": 1000})
            assert (await client.post("/v1/content", json=CONTENT_BODY)).status_code == 201
            assert set(await answers(redis_platform, secret)) == {"no_entitlement"}
            redis = aioredis.from_url(redis_server_process.url)
            try:  # the answers came through the shared cache: the row's entry is in Redis
                assert await redis.exists(f"kassa:entitlement:{tenant}|ann|final") == 1
            finally:
                await redis.aclose()
            purchase = await client.post(
                "/v1/purchases", json={"customer_id": "ann", "content_id": "final", "currency": "EUR"}
            )
            assert purchase.status_code == 201, purchase.text
            assert set(await answers(redis_platform, secret)) == {"active"}
            refund = await client.post(
                f"/v1/purchases/{purchase.json()['id']}/refunds", json={"reason": "event_cancelled"}
            )
            assert refund.status_code == 201, refund.text
            assert set(await answers(redis_platform, secret)) == {"revoked"}
    finally:
        await owner.close()
