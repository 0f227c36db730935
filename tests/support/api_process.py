"""An API process for chaos tests: start, wait until ready, load it with clients, SIGKILL it.

`load_until_killed` runs clients that each send one idempotent request after another and
records what was sent, what was acknowledged (201) and what got no answer; once enough are
acknowledged the API's process group is SIGKILLed mid-load.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kassa.store.master_key import ensure_master_key

if TYPE_CHECKING:
    from collections.abc import Callable

KASSA = Path(sys.executable).parent / "kassa"


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
    ensure_master_key(data_dir / "master_key")  # `kassa api` needs one; `kassa up` makes it
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


async def open_wallets(base: str, headers: dict[str, str], wallets: list[str], funds: int = 5_000) -> None:
    """A debit-normal bank that may go negative, and credit wallets funded from it."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as setup:
        bank = {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True}
        for spec in [bank] + [{"id": w, "currency": "USD"} for w in wallets]:
            assert (await setup.post("/v1/accounts", json=spec)).status_code == 201
        for wallet in wallets:
            funded = await setup.post(
                "/v1/transfers",
                json={"debit_account_id": "bank", "credit_account_id": wallet, "amount": funds, "currency": "USD"},
            )
            assert funded.status_code == 201


@dataclass
class Load:
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> body
    acknowledged: dict[str, Any] = field(default_factory=dict)  # request id -> the 201 body
    unanswered: list[str] = field(default_factory=list)  # cut off by the kill


async def load_until_killed(
    api: subprocess.Popen[bytes],
    base: str,
    headers: dict[str, str],
    path: str,
    make_body: Callable[[random.Random, str], dict[str, Any]],
    clients: int,
    acks_before_kill: int,
) -> Load:
    """POST `make_body(rng, id)` to `path` from `clients` clients (each with an Idempotency-Key
    equal to the id) until `acks_before_kill` are acknowledged, then SIGKILL the API."""
    load = Load()
    enough = asyncio.Event()

    async def client(number: int) -> None:
        rng = random.Random(number)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            for n in range(10_000):
                request_id = f"c{number}-{n}"
                body = load.sent[request_id] = make_body(rng, request_id)
                try:
                    response = await http.post(path, json=body, headers={"Idempotency-Key": request_id})
                except httpx.TransportError:
                    load.unanswered.append(request_id)
                    return
                assert response.status_code in (201, 422), response.text
                if response.status_code == 201:
                    load.acknowledged[request_id] = response.json()
                    if len(load.acknowledged) >= acks_before_kill:
                        enough.set()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.wait_for(enough.wait(), 60)
    stop(api, signal.SIGKILL)  # mid-load: requests are queued, in batches, and in flight
    await asyncio.gather(*tasks)
    assert load.unanswered, "the kill should have cut requests off mid-flight"
    return load
