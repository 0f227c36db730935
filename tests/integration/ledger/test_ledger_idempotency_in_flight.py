"""A retry racing the first request with its key gets 409 in the same process and in another one; once the
first has finished, a retry replays it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from kassa.api.app import create_app
from kassa.identity.service import IdentityService
from kassa.settings import Settings
from kassa.store.master_key import ensure_master_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from starlette.applications import Starlette

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


def settings(pg_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=pg_url,
        nats_url=None,
        kafka_bootstrap=None,
        redis_url=None,
        http_host="127.0.0.1",
        http_port=0,
        http_workers=1,
        data_dir=data_dir,
        admin_key=None,
        log_level="WARNING",
    )


@pytest.fixture
async def two_processes(app_url: str, tmp_path: Path) -> AsyncIterator[tuple[Starlette, Starlette]]:
    """Two app instances with their own services: as far as in-process state goes, two processes."""
    handlers = logging.getLogger().handlers[:]
    ensure_master_key(tmp_path / "master_key")  # what kassa up does for its data directory
    apps = (create_app(settings(app_url, tmp_path)), create_app(settings(app_url, tmp_path)))
    logging.getLogger().handlers[:] = handlers  # create_app points logging at stdout; keep pytest's capture
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        yield apps


async def test_a_concurrent_retry_is_in_flight_in_both_processes_and_replayed_after(
    two_processes: tuple[Starlette, Starlette], pool: Pool
) -> None:
    tenant, key = await IdentityService(pool).create_tenant("in-flight", None, None)
    headers = {"Authorization": f"Bearer {key.secret}", "Idempotency-Key": str(uuid.uuid4())}
    here, there = (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kassa", headers=headers)
        for app in two_processes
    )
    async with here, there:
        for spec in ({"id": "src", "currency": "EUR", "allow_negative": True}, {"id": "dst", "currency": "EUR"}):
            assert (
                await here.post("/v1/accounts", json=spec, headers={"Idempotency-Key": str(uuid.uuid4())})
            ).status_code == 201
        body = {"debit_account_id": "src", "credit_account_id": "dst", "amount": 9, "currency": "EUR"}
        async with pool.acquire() as blocker, blocker.transaction():
            # Hold the account row so that the first request blocks inside its ledger transaction.
            await blocker.execute("SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = 'dst' FOR UPDATE", tenant.id)
            first = asyncio.create_task(here.post("/v1/transfers", json=body))
            deadline = time.monotonic() + 10
            while not two_processes[0].state.services.inflight_keys and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            same_process = await here.post("/v1/transfers", json=body)
            assert same_process.status_code == 409
            assert same_process.json()["code"] == "idempotency_key_in_flight"
            other_process = await there.post("/v1/transfers", json=body)
            assert other_process.status_code == 409
            assert other_process.json()["code"] == "idempotency_key_in_flight"
            assert not first.done()
        original = await first
        replayed = await there.post("/v1/transfers", json=body)
        assert original.status_code == 201 and "idempotent-replayed" not in original.headers
        assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == original.content
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant.id) == 1
