"""Concurrent clients on two API worker processes lose no update, never overdraw, and never apply a retry twice."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.ledger import assert_tenant_ledger_consistent
from support.server import HTTP_WORKERS, balances, create_accounts, fund, new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

CLIENTS = 50
REQUESTS_PER_CLIENT = 16
WALLETS = ["w1", "w2", "w3"]
START_BALANCE = 1_000


def transfer(debit: str, credit: str, amount: int, **extra: object) -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD", **extra}


def children(pid: int) -> list[tuple[int, list[str]]]:
    """Live child processes of `pid` with their argv (from /proc; the platform runs on Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # the process ended while we looked
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), [a.decode() for a in argv if a]))
    return found


def test_the_shared_platform_runs_two_api_worker_processes(platform: Platform) -> None:
    # kassa up -> `kassa api` (granian's main process) -> one process per HTTP worker.
    apis = [pid for pid, argv in children(platform.process.pid) if argv[-1:] == ["api"]]
    assert len(apis) == 1, children(platform.process.pid)
    workers = [pid for pid, argv in children(apis[0]) if argv[-1:] == ["api"]]
    assert HTTP_WORKERS == 2 and len(workers) == HTTP_WORKERS, children(apis[0])


async def test_concurrent_clients_on_few_accounts_lose_no_update_and_never_overdraw(
    platform: Platform, platform_db: Pool
) -> None:
    secret = await new_tenant(platform)
    tenant = await tenant_id_of(platform_db, secret)
    async with platform.client(secret) as setup:
        await create_accounts(
            setup,
            [{"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True}]
            + [{"id": w, "currency": "USD"} for w in WALLETS],
        )
        for wallet in WALLETS:
            await fund(setup, "bank", wallet, START_BALANCE)

    acknowledged: list[tuple[str, str, int]] = []
    outcomes: Counter[int] = Counter()
    rng = random.Random(20_240_601)

    def step() -> tuple[str, str, int]:
        debit, credit = rng.sample(["bank", *WALLETS], 2)
        return debit, credit, rng.randint(1, 400)

    plans = [[step() for _ in range(REQUESTS_PER_CLIENT)] for _ in range(CLIENTS)]

    async def client(plan: list[tuple[str, str, int]]) -> None:
        # One connection per client, as separate clients would have: granian spreads them over its workers.
        async with platform.client(secret) as http:
            for debit, credit, amount in plan:
                response = await http.post("/v1/transfers", json=transfer(debit, credit, amount))
                outcomes[response.status_code] += 1
                if response.status_code == 201:
                    acknowledged.append((debit, credit, amount))
                else:
                    assert (response.status_code, response.json()["code"]) == (422, "insufficient_funds")

    await asyncio.gather(*(client(plan) for plan in plans))
    assert outcomes[201] > CLIENTS * REQUESTS_PER_CLIENT // 2, outcomes  # the test did move money

    expected = dict.fromkeys(WALLETS, START_BALANCE) | {"bank": 3 * START_BALANCE}
    for debit, credit, amount in acknowledged:
        expected[debit] += amount if debit == "bank" else -amount
        expected[credit] += -amount if credit == "bank" else amount
    async with platform.client(secret) as http:
        for account, posted in expected.items():
            assert (await balances(http, account))["posted"] == posted, account
    stored = await platform_db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant)
    assert stored == len(acknowledged) + len(WALLETS)
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def concurrently(
    platform: Platform, secret: str, bodies: list[dict[str, object]], headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    async def one(body: dict[str, object]) -> httpx.Response:
        async with platform.client(secret) as http:
            return await http.post("/v1/transfers", json=body, headers=headers)

    return await asyncio.gather(*(one(body) for body in bodies))


async def funded_pair(platform: Platform, platform_db: Pool) -> tuple[str, str]:
    secret = await new_tenant(platform)
    async with platform.client(secret) as http:
        await create_accounts(
            http, [{"id": "src", "currency": "USD", "allow_negative": True}, {"id": "dst", "currency": "USD"}]
        )
    return secret, await tenant_id_of(platform_db, secret)


async def test_concurrent_retries_of_one_idempotency_key_make_exactly_one_transfer(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await funded_pair(platform, platform_db)
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    responses = await concurrently(platform, secret, [transfer("src", "dst", 25)] * 40, key)

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert all(r.json()["code"] == "idempotency_key_in_flight" for r in responses if r.status_code == 409)
    created = [r for r in responses if r.status_code == 201]
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(1 for r in created if "idempotent-replayed" not in r.headers) <= 1
    assert await platform_db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1

    after = (await concurrently(platform, secret, [transfer("src", "dst", 25)], key))[0]
    assert after.status_code == 201 and after.headers["idempotent-replayed"] == "true"
    assert after.json()["id"] == created[0].json()["id"] if created else after.json()["amount"] == 25
    async with platform.client(secret) as http:
        assert (await balances(http, "dst"))["posted"] == 25


async def test_concurrent_creates_with_one_transfer_id_make_exactly_one_transfer(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await funded_pair(platform, platform_db)
    body = transfer("src", "dst", 40, id="order-1")
    responses = await concurrently(platform, secret, [body] * 30)
    assert sorted({r.status_code for r in responses}) in ([201], [200, 201]), [r.status_code for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.content for r in responses}) == 1
    assert await platform_db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1

    different = await concurrently(platform, secret, [transfer("src", "dst", 41, id="order-1")] * 10)
    assert {(r.status_code, r.json()["code"]) for r in different} == {(409, "transfer_exists")}
    async with platform.client(secret) as http:
        assert (await balances(http, "dst"))["posted"] == 40


async def test_racing_creates_of_one_transfer_id_with_different_bodies_let_one_win(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await funded_pair(platform, platform_db)
    bodies = [transfer("src", "dst", amount, id="race") for amount in (1, 2) * 15]
    responses = await concurrently(platform, secret, bodies)
    winners = {r.json()["amount"] for r in responses if r.status_code in (200, 201)}
    assert len(winners) == 1
    losers = [r for r in responses if r.status_code not in (200, 201)]
    assert {(r.status_code, r.json()["code"]) for r in losers} == {(409, "transfer_exists")}
    assert len(losers) == 15
    assert await platform_db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1
    async with platform.client(secret) as http:
        assert (await balances(http, "dst"))["posted"] == winners.pop()
