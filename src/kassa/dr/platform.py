"""The parts of the platform the drill runs: `kassa api` processes and the tenant they serve."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from kassa.dr.load import CURRENCY
from kassa.shared.processes import die_with_parent
from kassa.store.embedded import free_port

if TYPE_CHECKING:
    from pathlib import Path

API_READY_TIMEOUT_S = 60.0
API_STOP_TIMEOUT_S = 10.0
WALLET_FUNDING_MINOR = 10_000_000  # far more than the drill moves, so no transfer is refused


@dataclass
class ApiProcess:
    """A platform process of the drill (`base` is the API's URL, empty for workers)."""

    base: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL the server and its workers (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(API_STOP_TIMEOUT_S)


def _spawn(role: list[str], data_dir: Path, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    """`kassa <role>` in a session of its own (so that killing its group kills it and its
    children only), logging to data_dir/<role>.log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_DATA_DIR=str(data_dir), KASSA_LOG_LEVEL="WARNING", **settings)
    with (data_dir / f"{role[0]}.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "kassa.cli.main", *role],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def start_workers(database_url: str, nats_url: str, master_key: Path, data_dir: Path) -> ApiProcess:
    """`kassa worker all` (relay and consumers) against `database_url` and the broker."""
    settings = {"KASSA_DATABASE_URL": database_url, "KASSA_NATS_URL": nats_url}
    process = _spawn(["worker", "all"], data_dir, settings | {"KASSA_MASTER_KEY_FILE": str(master_key)})
    return ApiProcess("", process)


async def start_api(database_url: str, data_dir: Path, master_key: Path, nats_url: str | None = None) -> ApiProcess:
    """`kassa api` (one process) on a free port against `database_url`, once /readyz says so."""
    port = free_port()
    settings = {"KASSA_DATABASE_URL": database_url, "KASSA_HTTP_PORT": str(port), "KASSA_HTTP_WORKERS": "1"}
    settings["KASSA_MASTER_KEY_FILE"] = str(master_key)  # the same key file for every process
    # The API is ready when its database is; the broker matters to the workers only.
    settings["KASSA_READY_REQUIRES"] = "database"
    if nats_url:
        settings["KASSA_NATS_URL"] = nats_url
    process = _spawn(["api"], data_dir, settings)
    api = ApiProcess(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=api.base, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"kassa api exited with {process.returncode}; see {data_dir}/api.log")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return api
            await asyncio.sleep(0.05)
    api.kill()
    raise TimeoutError("kassa api did not become ready")


async def create_tenant(database_url: str) -> tuple[str, str]:
    """A fresh tenant on the primary; returns (tenant id, API key secret)."""
    from kassa.identity.service import IdentityService
    from kassa.store.pool import create_pool

    pool = await create_pool(database_url, size_max=2)
    try:
        result = await IdentityService(pool).create_tenant("dr-drill", None, None)
        assert not hasattr(result, "body")  # no idempotency key, so never a replay
        tenant, key = result
        return tenant.id, key.secret
    finally:
        await pool.close()


async def open_accounts(base: str, api_key: str, wallets: int) -> tuple[list[str], list[dict[str, Any]]]:
    """A treasury account and `wallets` wallets (no overdraft), each funded once; returns the
    wallet ids and the funding transfers as sent."""
    ids = [f"wallet-{n}" for n in range(wallets)]
    funding: list[dict[str, Any]] = [
        {"id": f"fund-{w}", "debit_account_id": "treasury", "credit_account_id": w}
        | {"amount": WALLET_FUNDING_MINOR, "currency": CURRENCY}
        for w in ids
    ]
    treasury = {"id": "treasury", "currency": CURRENCY, "normal_balance": "debit", "allow_negative": True}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as http:
        specs: list[dict[str, Any]] = [treasury, *({"id": w, "currency": CURRENCY} for w in ids)]
        for spec in specs:
            created = await http.post("/v1/accounts", json=spec)
            if created.status_code != 201:
                raise RuntimeError(f"could not open account {spec['id']}: {created.text}")
        for body in funding:
            moved = await http.post("/v1/transfers", json=body, headers={"Idempotency-Key": str(body["id"])})
            if moved.status_code != 201:
                raise RuntimeError(f"could not fund {body['credit_account_id']}: {moved.text}")
    return ids, funding


__all__ = ["ApiProcess", "create_tenant", "open_accounts", "start_api", "start_workers"]
