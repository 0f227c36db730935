"""Fixtures: a real Redis server for the shared rate limits, fetched like the other test tools.

Debian's `redis-server` (with `redis-tools` and the two libraries it links that a slim image
lacks) is fetched with `apt-get download` and unpacked with `dpkg -x` into
`${KASSA_TOOLS_DIR:-~/.cache/kassa/tools}/redis`, never installed system-wide, so a brand-new
CI machine does the same. The server runs on a free loopback port without persistence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kassa.store.embedded import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

PACKAGES = ("redis-server", "redis-tools", "liblzf1", "libjemalloc2")
START_TIMEOUT_S = 20.0


def tools_dir() -> Path:
    return Path(os.environ.get("KASSA_TOOLS_DIR") or Path.home() / ".cache" / "kassa" / "tools")


def _download(into: Path) -> None:
    command = ["apt-get", "download", *PACKAGES]
    if subprocess.run(command, cwd=into, capture_output=True, check=False).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, check=True)
        subprocess.run(command, cwd=into, capture_output=True, check=True)


def redis_server() -> tuple[Path, dict[str, str]]:
    """The redis-server binary and the environment it runs in (its libraries' directory)."""
    root = tools_dir() / "redis"
    binary = root / "usr" / "bin" / "redis-server"
    if not binary.exists():
        staging = Path(tempfile.mkdtemp(prefix="kassa-redis-"))
        try:
            _download(staging)
            unpacked = staging / "root"
            for deb in sorted(staging.glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
            root.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(root, ignore_errors=True)
            shutil.move(str(unpacked), str(root))  # whole, so a half-fetched tree is never used
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    libs = [str(p) for p in sorted((root / "usr" / "lib").glob("*-linux-gnu*"))]  # the machine's multiarch dir
    return binary, {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(libs)}


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary, env = redis_server()
        args = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {self.process.poll()})")
            time.sleep(0.05)

    def answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def redis_server_process() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
