"""An API SIGKILLed during multi-leg transactions keeps every acknowledged one whole, and nothing half-applied."""

from __future__ import annotations

import asyncio
import random
import signal
from typing import TYPE_CHECKING

import httpx
import pytest
from test_ledger_crash import start_api, stop, wait_ready

from kassa.identity.service import IdentityService
from kassa.store.embedded import free_port
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos
WALLETS = ["w1", "w2", "w3", "w4", "w5"]
CLIENTS = 30
ACKS_BEFORE_KILL = 150


def body(rng: random.Random, transaction_id: str) -> dict[str, object]:
    postings = []
    for _ in range(3):
        debit, credit = rng.sample(WALLETS, 2)
        postings.append(
            {"debit_account_id": debit, "credit_account_id": credit, "amount": rng.randint(1, 700), "currency": "USD"}
        )
    return {"id": transaction_id, "postings": postings}


async def test_a_sigkilled_api_keeps_every_acknowledged_multi_leg_transaction_whole(
    pg_url: str, pool: Pool, tmp_path: Path
) -> None:
    tenant, key = await IdentityService(pool).create_tenant("chaos-tx", None, None)  # type: ignore[misc]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key.secret}"}
    api = start_api(pg_url, port, 2, tmp_path)
    try:
        await wait_ready(base, api)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as setup:
            bank = {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True}
            for spec in [bank] + [{"id": w, "currency": "USD"} for w in WALLETS]:
                assert (await setup.post("/v1/accounts", json=spec)).status_code == 201
            for wallet in WALLETS:
                legs = [{"debit_account_id": "bank", "credit_account_id": wallet, "amount": 5_000, "currency": "USD"}]
                assert (await setup.post("/v1/transactions", json={"postings": legs})).status_code == 201

        sent: dict[str, dict[str, object]] = {}
        acknowledged: dict[str, dict[str, object]] = {}
        unanswered: list[str] = []
        enough = asyncio.Event()

        async def client(number: int) -> None:
            rng = random.Random(number)
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
                for n in range(10_000):
                    request = sent[f"c{number}-{n}"] = body(rng, f"c{number}-{n}")
                    try:
                        response = await http.post(
                            "/v1/transactions", json=request, headers={"Idempotency-Key": str(request["id"])}
                        )
                    except httpx.TransportError:
                        unanswered.append(str(request["id"]))
                        return
                    assert response.status_code in (201, 422), response.text
                    if response.status_code == 201:
                        acknowledged[str(request["id"])] = response.json()
                        if len(acknowledged) >= ACKS_BEFORE_KILL:
                            enough.set()

        load = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
        await asyncio.wait_for(enough.wait(), 60)
        stop(api, signal.SIGKILL)  # mid-load: transactions are queued, in batches, and in flight
        await asyncio.gather(*load)
        assert unanswered, "the kill should have cut requests off mid-flight"

        api = start_api(pg_url, port, 1, tmp_path)
        await wait_ready(base, api)
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            for transaction_id, first in acknowledged.items():
                stored = await http.get(f"/v1/transactions/{transaction_id}")
                assert stored.json() == first, f"acknowledged {transaction_id} lost or changed"
            # Every transaction is whole: all its postings and both entries of each, or nothing.
            counts = await pool.fetch(
                "SELECT t.id, (SELECT count(*) FROM transaction_postings p WHERE p.tenant_id = t.tenant_id"
                " AND p.transaction_id = t.id) AS postings, (SELECT count(*) FROM entries e WHERE e.tenant_id ="
                " t.tenant_id AND e.transaction_id = t.id) AS entries FROM transactions t WHERE t.tenant_id = $1",
                tenant.id,
            )
            legs = {r["id"]: len(sent[r["id"]]["postings"]) if r["id"] in sent else 1 for r in counts}  # type: ignore[arg-type]
            assert all((r["postings"], r["entries"]) == (legs[r["id"]], 2 * legs[r["id"]]) for r in counts)
            retried_ok = 0
            for transaction_id in unanswered:
                retry = await http.post(
                    "/v1/transactions", json=sent[transaction_id], headers={"Idempotency-Key": transaction_id}
                )
                assert retry.status_code in (201, 422), retry.text
                retried_ok += retry.status_code == 201
        total = await pool.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant.id)
        assert total == len(WALLETS) + len(acknowledged) + retried_ok
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
    finally:
        if api.poll() is None:
            stop(api, signal.SIGTERM)
