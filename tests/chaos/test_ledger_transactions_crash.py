"""An API SIGKILLed during multi-leg transactions keeps every acknowledged one whole, and nothing half-applied."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import httpx
import pytest

from kassa.identity.service import IdentityService
from kassa.store.embedded import free_port
from support.api_process import load_until_killed, open_wallets, start_api, stop, wait_ready
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    import random
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
    app_url: str, pool: Pool, tmp_path: Path
) -> None:
    tenant, key = await IdentityService(pool).create_tenant("chaos-tx", None, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key.secret}"}
    api = start_api(app_url, port, 2, tmp_path)
    try:
        await wait_ready(base, api)
        await open_wallets(base, headers, WALLETS)
        load = await load_until_killed(api, base, headers, "/v1/transactions", body, CLIENTS, ACKS_BEFORE_KILL)
        sent, acknowledged, unanswered = load.sent, load.acknowledged, load.unanswered

        api = start_api(app_url, port, 1, tmp_path)
        await wait_ready(base, api)
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            for transaction_id, first in acknowledged.items():
                stored = await http.get(f"/v1/transactions/{transaction_id}")
                assert stored.json() == first, f"acknowledged {transaction_id} lost or changed"
            # Every transaction is whole: all its postings and both entries of each, or nothing.
            counts = await pool.fetch(
                "SELECT t.id, cardinality(t.amounts) AS postings, (SELECT count(*) FROM entries e WHERE e.tenant_id ="
                " t.tenant_id AND e.transaction_id = t.id) AS entries FROM transactions t WHERE t.tenant_id = $1",
                tenant.id,
            )
            legs = {r["id"]: len(sent[r["id"]]["postings"]) for r in counts}
            assert all((r["postings"], r["entries"]) == (legs[r["id"]], 2 * legs[r["id"]]) for r in counts)
            retried_ok = 0
            for transaction_id in unanswered:
                retry = await http.post(
                    "/v1/transactions", json=sent[transaction_id], headers={"Idempotency-Key": transaction_id}
                )
                assert retry.status_code in (201, 422), retry.text
                retried_ok += retry.status_code == 201
        total = await pool.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant.id)
        assert total == len(acknowledged) + retried_ok
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
    finally:
        if api.poll() is None:
            stop(api, signal.SIGTERM)
