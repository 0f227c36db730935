"""`kassa up` supervises the sandbox payment provider like its other children: killed, it is
restarted on the same port and top-ups complete through it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from kassa.store.embedded import free_port
from support.payments import killed_and_replaced, sandbox_top_up, sandbox_wallet
from support.server import new_tenant, start_platform, stop_platform

pytestmark = pytest.mark.chaos
WAIT_S = 60.0


def _is_sandbox(command: list[str]) -> bool:
    return "provider" in command and "sandbox" in command


async def test_a_killed_sandbox_provider_is_restarted_and_top_ups_work_again() -> None:
    root = Path(tempfile.mkdtemp(prefix="kassa-sandbox-"))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    platform = start_platform(root / "data", free_port())
    try:
        async with platform.client(await new_tenant(platform)) as client:
            wallet = await sandbox_wallet(client)
            assert await sandbox_top_up(client, wallet, WAIT_S) == "succeeded"
            deadline = await killed_and_replaced(platform.process.pid, _is_sandbox, "sandbox provider", WAIT_S)
            # A top-up during the restart may fail with provider_unavailable (its hold released);
            # once the new process answers, top-ups complete again.
            assert platform.sandbox_url is not None
            async with httpx.AsyncClient(base_url=platform.sandbox_url) as sandbox:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await sandbox.get("/healthz")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, "the restarted sandbox provider never answered"
                    await asyncio.sleep(0.1)
            assert await sandbox_top_up(client, wallet, WAIT_S) == "succeeded"
            balances = (await client.get(f"/v1/wallets/{wallet}")).json()["balances"]
            assert balances["posted"] == 200
        assert any("sandbox-provider was killed by signal 9" in line for line in platform.log_lines())
    finally:
        assert stop_platform(platform) == 0
        shutil.rmtree(root, ignore_errors=True)
