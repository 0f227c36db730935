"""The sandbox payment provider for tests: started as `kassa provider sandbox` on a free port
(as `kassa up` does), plus small helpers over its test-helper API."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kassa.store.embedded import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

KASSA = Path(sys.executable).parent / "kassa"
START_TIMEOUT_S = 30.0


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0)

    async def behave(self, account: str, **behaviour: Any) -> None:
        async with self.client() as client:
            response = await client.post(f"/v1/test_helpers/accounts/{account}/behaviour", json=behaviour)
        assert response.status_code == 200, response.text

    async def helper(self, kind: str, key: str, action: str, **body: Any) -> dict[str, Any]:
        async with self.client() as client:
            response = await client.post(f"/v1/test_helpers/{kind}/{key}/{action}", json=body or None)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def deliveries(self, account: str) -> list[dict[str, Any]]:
        async with self.client() as client:
            response = await client.get("/v1/test_helpers/deliveries", params={"account": account})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found


@contextmanager
def running_sandbox(callback_url: str, secret_file: Path) -> Iterator[Sandbox]:
    port = free_port("127.0.0.1")
    command = [
        str(KASSA),
        "provider",
        "sandbox",
        "--port",
        str(port),
        "--callback-url",
        callback_url,
        "--secret-file",
        str(secret_file),
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    sandbox = Sandbox(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, "the sandbox provider exited at start"
            try:
                if httpx.get(f"{sandbox.url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the sandbox provider did not start"
            time.sleep(0.05)
        yield sandbox
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
