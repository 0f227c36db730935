"""`KASSA_HTTP_PORT=0` makes `kassa up` pick a free port once and print it: the HTTP workers, the
sandbox provider's callbacks and a restarted API all use that one port.

Found from the outside: with 0, `kassa up` passed 0 on to the API (which bound some port nobody
was told) and waited for readiness on port 0, then failed to start.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from support.payments import sandbox_top_up
from support.server import new_tenant, start_platform, stop_platform

pytestmark = pytest.mark.chaos
WAIT_S = 60.0


def _api_main(up_pid: int) -> psutil.Process | None:
    for child in psutil.Process(up_pid).children():
        try:
            if child.cmdline()[-1:] == ["api"]:
                return child
        except psutil.Error:
            continue
    return None


async def _ready(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
            return (await client.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_port_zero_picks_one_free_port_that_callbacks_and_a_restarted_api_keep_using() -> None:
    root = Path(tempfile.mkdtemp(prefix="kassa-free-port-"))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    platform = start_platform(root / "data", 0)
    try:
        port = int(platform.base_url.rsplit(":", 1)[1])
        assert port != 0
        said = [line for line in platform.log_lines() if not line.startswith("{")]
        assert f"KASSA_HTTP_PORT=0: using free port {port} on 127.0.0.1" in said
        assert f"  API:      {platform.base_url}/v1" in said
        async with platform.client(await new_tenant(platform)) as client:
            customer = (
                await client.post("/v1/customers", json={"type": "person", "name": "K", "country": "IE"})
            ).json()
            wallet = (await client.post(f"/v1/customers/{customer['id']}/wallets", json={"currency": "EUR"})).json()
            # The sandbox provider calls back the API on the picked port, not on 0.
            assert await sandbox_top_up(client, wallet["id"], WAIT_S) == "succeeded"
            victim = _api_main(platform.process.pid)
            assert victim is not None, "kassa up runs the API as its child"
            victim.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + WAIT_S
            while (found := _api_main(platform.process.pid)) is None or found.pid == victim.pid:
                assert time.monotonic() < deadline, "the API was not restarted"
                await asyncio.sleep(0.1)
            while not await _ready(platform.base_url):  # the same URL: the restart kept the port
                assert time.monotonic() < deadline, "the restarted API never answered on the picked port"
                await asyncio.sleep(0.1)
            assert await sandbox_top_up(client, wallet["id"], WAIT_S) == "succeeded"
            balances = (await client.get(f"/v1/wallets/{wallet['id']}")).json()["balances"]
            assert balances["posted"] == 200
    finally:
        assert stop_platform(platform) == 0
        shutil.rmtree(root, ignore_errors=True)
