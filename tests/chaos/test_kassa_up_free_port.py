"""`KASSA_HTTP_PORT=0` makes `kassa up` pick a free port once and print it: the HTTP workers, the
sandbox provider's callbacks and a restarted API all use that one port.

Found from the outside: with 0, `kassa up` passed 0 on to the API (which bound some port nobody
was told) and waited for readiness on port 0, then failed to start.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from support.payments import killed_and_replaced, sandbox_top_up, sandbox_wallet
from support.server import new_tenant, start_platform, stop_platform

pytestmark = pytest.mark.chaos
WAIT_S = 60.0


def _is_api(command: list[str]) -> bool:
    return command[-1:] == ["api"]


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
            wallet = await sandbox_wallet(client)
            # The sandbox provider calls back the API on the picked port, not on 0.
            assert await sandbox_top_up(client, wallet, WAIT_S) == "succeeded"
            deadline = await killed_and_replaced(platform.process.pid, _is_api, "API", WAIT_S)
            while not await _ready(platform.base_url):  # the same URL: the restart kept the port
                assert time.monotonic() < deadline, "the restarted API never answered on the picked port"
                await asyncio.sleep(0.1)
            assert await sandbox_top_up(client, wallet, WAIT_S) == "succeeded"
            balances = (await client.get(f"/v1/wallets/{wallet}")).json()["balances"]
            assert balances["posted"] == 200
    finally:
        assert stop_platform(platform) == 0
        shutil.rmtree(root, ignore_errors=True)
