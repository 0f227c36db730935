"""Multi-leg transactions from many clients on two API processes: no deadlock, no lost update, one per key."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from kassa.ledger.batcher import FALLBACK_LOG_MARK
from support.ledger import assert_tenant_ledger_consistent
from support.server import balances, create_accounts, fund, new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

CLIENTS = 40
REQUESTS_PER_CLIENT = 8
WALLETS = ["w1", "w2", "w3", "w4"]
START_BALANCE = 2_000


def fallbacks(platform: Platform) -> int:
    """Batches that hit a database error (a deadlock among them) and fell back to one commit per job."""
    return sum(1 for line in platform.log_lines() if FALLBACK_LOG_MARK in line)


async def batch_counts(platform: Platform) -> tuple[float, float]:
    """(ledger transactions committed, commands in them) so far, summed over the API processes."""
    async with platform.admin() as http:
        text = (await http.get("/metrics")).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("kassa_ledger_batch_size_count", "kassa_ledger_batch_size_sum"):
            values[name] = float(value)
    return values["kassa_ledger_batch_size_count"], values["kassa_ledger_batch_size_sum"]


def leg(debit: str, credit: str, amount: int) -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD"}


async def setup_tenant(platform: Platform, platform_db: Pool, accounts: list[str]) -> tuple[str, str]:
    secret = await new_tenant(platform)
    async with platform.client(secret) as http:
        await create_accounts(
            http,
            [{"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True}]
            + [{"id": a, "currency": "USD"} for a in accounts],
        )
        for wallet in WALLETS:
            await fund(http, "bank", wallet, START_BALANCE)
    return secret, await tenant_id_of(platform_db, secret)


async def test_multi_leg_transactions_over_overlapping_accounts_lose_no_update_and_never_deadlock(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await setup_tenant(platform, platform_db, WALLETS)
    rng = random.Random(7_301)
    # Each transaction moves money around three or four of the same four wallets, in random
    # order, so concurrent ones lock overlapping accounts in every order a client could choose.
    plans = []
    for _ in range(CLIENTS):
        plan = []
        for _ in range(REQUESTS_PER_CLIENT):
            legs = []
            for _ in range(rng.randint(2, 4)):
                debit, credit = rng.sample(WALLETS, 2)
                legs.append(leg(debit, credit, rng.randint(1, 300)))
            plan.append(legs)
        plans.append(plan)
    acknowledged: list[list[dict[str, object]]] = []
    outcomes: Counter[int] = Counter()
    fallbacks_before = fallbacks(platform)

    async def client(plan: list[list[dict[str, object]]]) -> None:
        async with platform.client(secret) as http:
            for legs in plan:
                response = await http.post("/v1/transactions", json={"postings": legs})
                outcomes[response.status_code] += 1
                if response.status_code == 201:
                    acknowledged.append(legs)
                else:
                    assert (response.status_code, response.json()["code"]) == (422, "insufficient_funds")

    await asyncio.wait_for(asyncio.gather(*(client(plan) for plan in plans)), 120)
    assert outcomes[201] > CLIENTS * REQUESTS_PER_CLIENT // 2, outcomes
    assert fallbacks(platform) == fallbacks_before, "no batch deadlocked or fell back to single commits"

    expected = dict.fromkeys(WALLETS, START_BALANCE)
    for legs in acknowledged:
        for p in legs:
            amount = p["amount"]
            assert isinstance(amount, int), p
            expected[str(p["debit_account_id"])] -= amount
            expected[str(p["credit_account_id"])] += amount
    async with platform.client(secret) as http:
        for account, posted in expected.items():
            assert (await balances(http, account))["posted"] == posted, account
    stored = await platform_db.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant)
    assert stored == len(acknowledged)
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_concurrent_retries_of_one_idempotency_key_make_exactly_one_transaction(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await setup_tenant(platform, platform_db, [*WALLETS, "fee"])
    body = {"postings": [leg("w1", "fee", 10), leg("w2", "fee", 15), leg("w3", "w4", 5)]}
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}

    async def one() -> httpx.Response:
        async with platform.client(secret) as http:
            return await http.post("/v1/transactions", json=body, headers=key)

    responses = await asyncio.gather(*(one() for _ in range(30)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert all(r.json()["code"] == "idempotency_key_in_flight" for r in responses if r.status_code == 409)
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) <= 1
    after = await one()
    assert after.status_code == 201 and after.headers["idempotent-replayed"] == "true"
    assert await platform_db.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant) == 1
    async with platform.client(secret) as http:
        assert (await balances(http, "fee"))["posted"] == 25


async def test_many_clients_crediting_one_hot_account_all_succeed_without_deadlock(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await setup_tenant(platform, platform_db, [*WALLETS, "fee", "artist"])
    count = 200

    async def purchase(n: int) -> int:
        async with platform.client(secret) as http:
            wallet = WALLETS[n % len(WALLETS)]
            response = await http.post(
                "/v1/transactions",
                json={"postings": [leg(wallet, "fee", 1), leg(wallet, "artist", 4)]},
                headers={"Idempotency-Key": f"hot-{n}"},
            )
            return response.status_code

    fallbacks_before = fallbacks(platform)
    batches_before, commands_before = await batch_counts(platform)
    statuses = await asyncio.wait_for(asyncio.gather(*(purchase(n) for n in range(count))), 120)
    assert Counter(statuses) == {201: count}
    batches_after, commands_after = await batch_counts(platform)
    assert commands_after - commands_before >= count
    assert batches_after - batches_before < count, "hot-account transactions shared database transactions"
    assert fallbacks(platform) == fallbacks_before, "no batch deadlocked or fell back to single commits"
    async with platform.client(secret) as http:
        assert (await balances(http, "fee"))["posted"] == count
        assert (await balances(http, "artist"))["posted"] == 4 * count
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_racing_posts_and_voids_of_one_pending_transaction_let_exactly_one_win(
    platform: Platform, platform_db: Pool
) -> None:
    secret, tenant = await setup_tenant(platform, platform_db, [*WALLETS, "fee"])
    async with platform.client(secret) as http:
        holds = []
        for _ in range(8):
            created = await http.post(
                "/v1/transactions",
                json={"postings": [leg("w1", "fee", 10), leg("w2", "w3", 20)], "pending": True},
            )
            assert created.status_code == 201, created.text
            holds.append(created.json()["id"])

    async def act(transaction_id: str, action: str) -> tuple[str, str, int, str | None]:
        async with platform.client(secret) as http:
            if action == "post":
                response = await http.post(f"/v1/transactions/{transaction_id}/post", json={"amounts": [4, None]})
            else:
                response = await http.post(f"/v1/transactions/{transaction_id}/void")
            code = None if response.status_code == 200 else response.json()["code"]
            return transaction_id, action, response.status_code, code

    results = await asyncio.gather(*(act(t, a) for t in holds for a in ("post", "void") * 4))
    for transaction_id in holds:
        mine = [r for r in results if r[0] == transaction_id]
        winners = [r for r in mine if r[2] == 200]
        assert len(winners) == 1, mine
        assert {(r[2], r[3]) for r in mine if r[2] != 200} == {(422, "transaction_not_pending")}, mine
        stored = await platform_db.fetchval(
            "SELECT status FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, transaction_id
        )
        assert stored == ("posted" if winners[0][1] == "post" else "voided")
    posted = sum(1 for r in results if r[2] == 200 and r[1] == "post")
    async with platform.client(secret) as http:
        assert (await balances(http, "fee"))["posted"] == 4 * posted
        assert (await balances(http, "w1"))["available"] == START_BALANCE - 4 * posted
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)
