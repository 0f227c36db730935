"""An API killed with SIGKILL mid-load leaves a consistent ledger holding every transfer it acknowledged."""

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
WALLETS = ["w1", "w2", "w3", "w4"]
CLIENTS = 30
ACKS_BEFORE_KILL = 200


async def test_a_sigkilled_api_loses_no_acknowledged_transfer_and_stays_consistent(
    app_url: str, pool: Pool, tmp_path: Path
) -> None:
    tenant, key = await IdentityService(pool).create_tenant("chaos", None, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key.secret}"}
    api = start_api(app_url, port, 2, tmp_path)
    try:
        await wait_ready(base, api)
        await open_wallets(base, headers, WALLETS)

        def body(rng: random.Random, transfer_id: str) -> dict[str, object]:
            debit, credit = rng.sample(WALLETS, 2)
            amount = rng.randint(1, 900)
            return {
                "id": transfer_id,
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": amount,
                "currency": "USD",
            }

        load = await load_until_killed(api, base, headers, "/v1/transfers", body, CLIENTS, ACKS_BEFORE_KILL)
        sent, unanswered = load.sent, load.unanswered
        acknowledged = {i: int(sent[i]["amount"]) for i in load.acknowledged}

        api = start_api(app_url, port, 1, tmp_path)
        await wait_ready(base, api)
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
            rows = await conn.fetch("SELECT id, amount, status FROM transfers WHERE tenant_id = $1", tenant.id)
        stored = {r["id"]: (r["amount"], r["status"]) for r in rows}
        missing = [i for i, amount in acknowledged.items() if stored.get(i) != (amount, "posted")]
        assert missing == [], f"{len(missing)} acknowledged transfers lost or changed"

        # Clients retry what got no answer with the same Idempotency-Key: each moves money at most once.
        retried_ok: dict[str, int] = {}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            for transfer_id in unanswered:
                retry = await http.post(
                    "/v1/transfers", json=sent[transfer_id], headers={"Idempotency-Key": transfer_id}
                )
                assert retry.status_code in (201, 422), retry.text
                if transfer_id in stored:
                    assert retry.headers.get("idempotent-replayed") == "true"
                if retry.status_code == 201:
                    retried_ok[transfer_id] = int(sent[transfer_id]["amount"])
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant.id)
            retried_rows = await conn.fetch(
                "SELECT id, amount, status FROM transfers WHERE tenant_id = $1 AND id = ANY($2)", tenant.id, unanswered
            )
            entries = await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant.id)
            total = await conn.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant.id)
        # Exactly the retries answered 201 exist, each once, with the amount that was sent.
        assert {r["id"]: (r["amount"], r["status"]) for r in retried_rows} == {
            i: (amount, "posted") for i, amount in retried_ok.items()
        }
        assert total == len(WALLETS) + len(acknowledged) + len(retried_ok)
        assert entries == 2 * total
    finally:
        if api.poll() is None:
            stop(api, signal.SIGTERM)
