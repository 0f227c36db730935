"""An API killed with SIGKILL mid-load leaves a consistent ledger holding every transfer it acknowledged."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from kassa.identity.service import IdentityService
from kassa.store.embedded import free_port
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos
KASSA = Path(sys.executable).parent / "kassa"
WALLETS = ["w1", "w2", "w3", "w4"]
CLIENTS = 30
ACKS_BEFORE_KILL = 200


def start_api(database_url: str, port: int, workers: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        {
            "KASSA_DATABASE_URL": database_url,
            "KASSA_HTTP_PORT": str(port),
            "KASSA_HTTP_WORKERS": str(workers),
            "KASSA_DATA_DIR": str(data_dir),
            "KASSA_LOG_LEVEL": "WARNING",
        }
    )
    # Its own session, so that killing its process group kills the server and its workers only.
    with (data_dir / "api.log").open("ab") as log:
        return subprocess.Popen(
            [str(KASSA), "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "kassa api exited while starting"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("kassa api did not become ready")


def stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    os.killpg(process.pid, sig)
    process.wait(30)


async def test_a_sigkilled_api_loses_no_acknowledged_transfer_and_stays_consistent(
    app_url: str, pool: Pool, tmp_path: Path
) -> None:
    tenant, key = await IdentityService(pool).create_tenant("chaos", None, None)  # type: ignore[misc]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key.secret}"}
    api = start_api(app_url, port, 2, tmp_path)
    try:
        await wait_ready(base, api)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as setup:
            bank = {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True}
            for spec in [bank] + [{"id": w, "currency": "USD"} for w in WALLETS]:
                assert (await setup.post("/v1/accounts", json=spec)).status_code == 201
            for wallet in WALLETS:
                funded = await setup.post(
                    "/v1/transfers",
                    json={"debit_account_id": "bank", "credit_account_id": wallet, "amount": 5_000, "currency": "USD"},
                )
                assert funded.status_code == 201

        sent: dict[str, dict[str, object]] = {}
        acknowledged: dict[str, int] = {}
        unanswered: list[str] = []
        enough = asyncio.Event()

        async def client(number: int) -> None:
            rng = random.Random(number)
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
                for n in range(10_000):
                    debit, credit = rng.sample(WALLETS, 2)
                    body = {
                        "id": f"c{number}-{n}",
                        "debit_account_id": debit,
                        "credit_account_id": credit,
                        "amount": rng.randint(1, 900),
                        "currency": "USD",
                    }
                    sent[str(body["id"])] = body
                    try:
                        response = await http.post(
                            "/v1/transfers", json=body, headers={"Idempotency-Key": str(body["id"])}
                        )
                    except httpx.TransportError:
                        unanswered.append(str(body["id"]))
                        return
                    assert response.status_code in (201, 422), response.text
                    if response.status_code == 201:
                        acknowledged[str(body["id"])] = int(body["amount"])  # type: ignore[call-overload]
                        if len(acknowledged) >= ACKS_BEFORE_KILL:
                            enough.set()

        load = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
        await asyncio.wait_for(enough.wait(), 60)
        stop(api, signal.SIGKILL)  # mid-load: requests are queued, in batches, and in flight
        await asyncio.gather(*load)
        assert unanswered, "the kill should have cut requests off mid-flight"

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
                    retried_ok[transfer_id] = int(sent[transfer_id]["amount"])  # type: ignore[call-overload]
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
