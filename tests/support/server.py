"""Fixtures: the whole platform started as `make run` does (`.venv/bin/kassa up`), shared by the session.

It runs with two API worker processes, so the e2e concurrency tests exercise cross-process
behaviour on the same server that the functional tests use. Teardown sends SIGTERM and asserts
a clean exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from kassa.store.embedded import free_port
from kassa.store.pool import create_pool
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from kassa.store.pool import Pool

REPO = Path(__file__).resolve().parents[2]
KASSA = Path(sys.executable).parent / "kassa"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HTTP_WORKERS = 2


@dataclass
class Platform:
    base_url: str
    admin_key: str
    database_url: str  # the schema owner's: before/after checks across tenants
    app_database_url: str  # the role the API runs as
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    sandbox_url: str | None = None  # the sandbox payment provider `kassa up` started

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=auth(self.admin_key), timeout=30.0)

    def client(self, secret: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=auth(secret), timeout=30.0)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


KYC_SANDBOX_SECRET = "e2e-kyc-sandbox-secret"  # noqa: S105 - a test-only shared secret


def start_platform(data_dir: Path, port: int, extra_env: dict[str, str] | None = None) -> Platform:
    """Start `kassa up` from the repository root with output in data_dir/kassa.log; wait until it
    prints its banner (it does so only once /readyz answers). Webhooks may go to loopback
    receivers unless `extra_env` sets KASSA_WEBHOOK_ALLOW_PRIVATE to "0"."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        {
            "KASSA_DATA_DIR": str(data_dir),
            "KASSA_HTTP_PORT": str(port),
            "KASSA_HTTP_WORKERS": str(HTTP_WORKERS),
            "KASSA_LOG_LEVEL": "INFO",
            # The tests' webhook receivers listen on loopback; off by default, so on explicitly.
            "KASSA_WEBHOOK_ALLOW_PRIVATE": "1",
            # The sandbox KYC provider calls the API back with results signed by this secret.
            "KASSA_KYC_SANDBOX_SECRET": KYC_SANDBOX_SECRET,
            **(extra_env or {}),
        }
    )
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [str(KASSA), "up"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    admin_key = None
    while admin_key is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"kassa up did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        for line in log_path.read_text(errors="replace").splitlines():
            if line.strip().startswith("Admin API key:"):
                admin_key = line.split(":", 1)[1].strip()
        time.sleep(0.1)
    if not admin_key.startswith("kassa_"):
        # The banner shows a key only on the start that generated it: otherwise it comes from
        # KASSA_ADMIN_KEY or the key file of an earlier start.
        given = (extra_env or {}).get("KASSA_ADMIN_KEY")
        admin_key = given or (data_dir / "admin_key").read_text().strip()
    runtime = json.loads((data_dir / "runtime.json").read_text())
    return Platform(
        runtime["api_url"],
        admin_key,
        runtime["migration_database_url"],
        runtime["database_url"],
        data_dir,
        log_path,
        process,
        runtime.get("sandbox_url"),
    )


def stop_platform(platform: Platform) -> int:
    platform.process.send_signal(signal.SIGTERM)
    try:
        return platform.process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        platform.process.kill()
        platform.process.wait()
        raise


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with own_platform("kassa-e2e-") as running:
        yield running


@contextmanager
def own_platform(prefix: str, extra_env: dict[str, str] | None = None) -> Iterator[Platform]:
    """A platform in a fresh temporary directory, stopped with SIGTERM (which must exit cleanly)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    running = start_platform(root / "data", free_port(), extra_env)
    try:
        yield running
    finally:
        code = stop_platform(running)
        assert code == 0, f"kassa up exited with {code} on SIGTERM:\n{running.log_lines()[-40:]}"
        assert not (running.data_dir / "runtime.json").exists(), "kassa up left its runtime file behind"
        # Only after a clean stop: on a failure the data and the log stay for a post-mortem.
        shutil.rmtree(root, ignore_errors=True)


async def send_head_only(
    platform: Platform, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send only a request's head over a raw socket (the body it announces is never written, so
    no connection reset can race the answer); returns the status, headers and body of the answer."""
    url = httpx.URL(platform.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = f"{method} {path} HTTP/1.1\r\nHost: {url.host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write((head + "\r\n").encode())
    await writer.drain()
    status_line = await reader.readline()
    found = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        found[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(found["content-length"]))
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1]), found, body


@pytest.fixture(scope="session")
async def platform_db(platform: Platform) -> AsyncIterator[Pool]:
    """A small pool on the platform's own database, for before/after checks."""
    pool = await create_pool(platform.database_url, size_max=4)
    try:
        yield pool
    finally:
        await pool.close()


async def new_tenant(platform: Platform) -> str:
    """Create a tenant through the API with the admin key; returns its API key secret."""
    async with platform.admin() as admin:
        response = await admin.post("/v1/tenants", json={"name": f"test-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    secret: str = response.json()["api_key"]["secret"]
    return secret


@asynccontextmanager
async def ledger_tenant(
    platform: Platform, platform_db: Pool, accounts: list[dict[str, object]], buyer_funds: int
) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh tenant (its first key has `admin`) with `accounts`, whose "buyer" got
    `buyer_funds` USD from "bank"; its ledger's invariants are checked when the block ends."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_accounts(client, accounts)
        await fund(client, "bank", "buyer", buyer_funds)
        yield client
    tenant = await tenant_id_of(platform_db, secret)
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def tenant_id_of(pool: Pool, secret: str) -> str:
    from kassa.identity.domain.model import hash_secret

    tenant: str = await pool.fetchval("SELECT tenant_id FROM api_keys WHERE secret_hash = $1", hash_secret(secret))
    return tenant


async def create_accounts(client: httpx.AsyncClient, specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        response = await client.post("/v1/accounts", json=spec)
        assert response.status_code == 201, response.text


async def fund(client: httpx.AsyncClient, source: str, target: str, amount: int, currency: str = "USD") -> None:
    response = await client.post(
        "/v1/transfers",
        json={"debit_account_id": source, "credit_account_id": target, "amount": amount, "currency": currency},
    )
    assert response.status_code == 201, response.text


async def balances(client: httpx.AsyncClient, account_id: str) -> dict[str, int]:
    response = await client.get(f"/v1/accounts/{account_id}")
    assert response.status_code == 200, response.text
    found: dict[str, int] = response.json()["balances"]
    return found


async def get_ok(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """GET `path`, which must answer 200; its JSON object."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def until_ok(client: httpx.AsyncClient, path: str, timeout_s: float, **expected: Any) -> dict[str, Any]:
    """Poll `path` until its JSON has every `expected` field value (state, not a sleep)."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = await get_ok(client, path)
            if all(found.get(k) == v for k, v in expected.items()):
                return found
            await asyncio.sleep(0.05)
