"""`kassa up` runs its API as the application role and its workers as the worker role (never as
the superuser or the schema owner), its NATS refuses a client without credentials (so nobody
local can publish a forged event), and a money movement still reaches the notification log
through relay and consumers under row-level security."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from kassa.store import roles
from support.server import KASSA, create_accounts, fund, new_tenant

if TYPE_CHECKING:
    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
_WAIT_S = 30.0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


async def test_the_api_and_the_workers_connect_as_their_own_least_privileged_roles(
    platform: Platform, platform_db: Pool
) -> None:
    children = {pid: _cmdline(pid) for pid in _descendants(platform.process.pid)}
    api = [pid for pid, cmd in children.items() if "kassa.cli.main api" in cmd]
    workers = [pid for pid, cmd in children.items() if "kassa.cli.main worker" in cmd]
    assert api and workers, children
    for pid in api + workers:
        env = _environment(pid)
        assert urlsplit(env["KASSA_DATABASE_URL"]).username == roles.APP
        assert urlsplit(env["KASSA_WORKER_DATABASE_URL"]).username == roles.WORKER
        assert "KASSA_MIGRATION_DATABASE_URL" not in env  # the owner's password stays with kassa up
        assert "@" in env["KASSA_NATS_URL"]  # the broker is reached with credentials
    rows = await platform_db.fetch(
        "SELECT DISTINCT a.usename, r.rolsuper, r.rolbypassrls FROM pg_stat_activity a"
        " JOIN pg_roles r ON r.rolname = a.usename WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
    )
    users = {r["usename"] for r in rows}
    assert {roles.APP, roles.WORKER} <= users
    assert not any(r["rolsuper"] for r in rows), rows


def test_the_platforms_nats_refuses_a_publisher_without_credentials(platform: Platform) -> None:
    url = urlsplit(json.loads((platform.data_dir / "runtime.json").read_text())["nats_url"])
    assert url.username and url.password
    forged = b'{"id":"FORGED-1","type":"TransferPosted","data":{"amount":99999999}}'
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        assert sock.recv(4096).startswith(b"INFO")
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false}\r\n'
            + b"PUB kassa.events.TransferPosted.t-victim %d\r\n%s\r\nPING\r\n" % (len(forged), forged)
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"-ERR 'Authorization Violation'"), answer


async def test_a_transfer_reaches_the_notification_log_through_the_worker_role(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as client:
        await create_accounts(
            client,
            [
                {"id": "bank", "currency": "EUR", "normal_balance": "debit", "allow_negative": True},
                {"id": "wallet", "currency": "EUR", "metadata": {"notify": True}},  # opted in to the log
            ],
        )
        await fund(client, "bank", "wallet", 1_234, "EUR")
        deadline = time.monotonic() + _WAIT_S
        while True:
            page = (await client.get("/v1/notifications", params={"account_id": "wallet"})).json()
            kinds = {n["event_type"] for n in page["data"]}
            if "TransferPosted" in kinds:
                break
            assert time.monotonic() < deadline, f"no TransferPosted notification after {_WAIT_S} s: {page}"
            await asyncio.sleep(0.1)
        assert "AccountCreated" in kinds
        # The bank account did not opt in: the same consumer transaction wrote nothing for it.
        assert (await client.get("/v1/notifications", params={"account_id": "bank"})).json()["data"] == []


def _kassa(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """A `kassa` command beside the running platform: it finds the databases in runtime.json."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env["KASSA_DATA_DIR"] = str(platform.data_dir)
    return subprocess.run([str(KASSA), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_the_operator_commands_work_beside_kassa_up_each_as_its_role(platform: Platform) -> None:
    migrated = _kassa(platform, "migrate")
    assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stderr
    created = _kassa(platform, "tenant", "create", "--name", "from-the-cli")
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["api_key"]
    async with platform.client(secret) as client:
        assert (await client.get("/v1/accounts")).status_code == 200
    letters = _kassa(platform, "events", "dlq", "list")
    assert letters.returncode == 0, letters.stderr


def test_every_file_of_the_platform_holding_a_secret_is_readable_by_its_owner_only(platform: Platform) -> None:
    secrets = ["runtime.json", "admin_key", "postgres/credentials.json", "nats/credentials.json", "nats/nats.conf"]
    for name in secrets:
        path = platform.data_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
