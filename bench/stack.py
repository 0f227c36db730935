"""The processes a benchmark run starts: one embedded PostgreSQL and `kassa up` against it.

Both are always started on free ports, never on standard ones, and stopped by their owner
(`Postgres.stop`, `KassaUp.stop`), which bench/run.py calls in `finally` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.store import roles
from kassa.store.embedded import EmbeddedPostgres, free_port

if TYPE_CHECKING:
    from pathlib import Path

HOST = "127.0.0.1"
_START_TIMEOUT_S = 90
_STOP_TIMEOUT_S = 30
_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")
_LATENCY = re.compile(r"latency average = ([\d.]+) ms")


class Postgres:
    """An embedded PostgreSQL with fsync on, shared by pgbench and every `kassa up` of the run."""

    def __init__(self, root: Path) -> None:
        self.embedded = EmbeddedPostgres(root=root, fsync=True)

    @property
    def port(self) -> int:
        return self.embedded.port

    def start(self) -> None:
        self.embedded.start()

    def stop(self) -> None:
        self.embedded.stop()

    def database_url(self, name: str) -> str:
        """The superuser's URL: the benchmark's own setup and checks."""
        return self.embedded.role_url(roles.SUPERUSER, name)

    def role_urls(self, name: str) -> dict[str, str]:
        """What `kassa up` runs as against `name`: owner (migrations), app (API), worker."""
        return self.embedded.role_urls(name)

    def postmaster_pid(self) -> int:
        return int((self.embedded.data / "postmaster.pid").read_text().split("\n", 1)[0])

    async def execute(self, sql: str, database: str = "postgres") -> None:
        conn = await asyncpg.connect(self.database_url(database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, name: str) -> None:
        await self.execute(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(self.embedded.provision, name)  # kassa's roles, as in production

    def tpcb(self, scale: int, clients: int, duration_s: int) -> dict[str, Any]:
        """pgbench TPC-B in a database of its own: initialize, checkpoint, run; TPS and latency."""
        try:
            return self._tpcb(scale, clients, duration_s)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{exc}\n{exc.stderr}") from exc

    def _tpcb(self, scale: int, clients: int, duration_s: int) -> dict[str, Any]:
        started = time.perf_counter()
        self.embedded.pgbench(["-i", "-q", "-s", str(scale), "pgbench"])
        init_s = time.perf_counter() - started
        self.embedded.pgbench(["-c", "1", "-t", "1", "pgbench"])  # connections and caches warm
        subprocess.run(
            [str(_psql()), "-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", "pgbench", "-c", "CHECKPOINT"],
            check=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": self.embedded.passwords()[roles.SUPERUSER]},
        )
        args = ["-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)), "-T", str(duration_s), "pgbench"]
        out = self.embedded.pgbench(args)
        tps, latency = _TPS.search(out), _LATENCY.search(out)
        if tps is None:
            raise RuntimeError(f"pgbench printed no TPS:\n{out}")
        return {
            "tps": float(tps.group(1)),
            "latency_avg_ms": float(latency.group(1)) if latency else None,
            "scale": scale,
            "clients": clients,
            "duration_s": duration_s,
            "init_s": round(init_s, 1),
            "args": args,
        }


def _psql() -> Path:
    from kassa.store.embedded import bin_dir

    return bin_dir() / "psql"


class KassaUp:
    """`kassa up` as a child process, against an existing database, on a free HTTP port."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        workers: int,
        with_workers: bool = True,
        role_urls: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        # With role URLs kassa runs as in production (API as the application role, under
        # row-level security); without, everything runs as `database_url`'s role.
        self.role_urls = role_urls
        self.workers = workers
        self.with_workers = with_workers  # False: `kassa up --no-workers`, the API role alone
        self.port = free_port(HOST)
        # Our own bootstrap admin key (KASSA_ADMIN_KEY) rather than scraping it from the output.
        self.admin_key = "bench_admin_" + secrets.token_hex(16)
        self.log_path = data_dir.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.nats_url: str | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KASSA_NATS_URL", "KASSA_KAFKA_BOOTSTRAP", "KASSA_REDIS_URL", "KASSA_ADMIN_KEY")
        }
        env.update(
            {
                "KASSA_DATABASE_URL": self.database_url,
                "KASSA_HTTP_HOST": HOST,
                "KASSA_HTTP_PORT": str(self.port),
                "KASSA_HTTP_WORKERS": str(self.workers),
                "KASSA_LOG_LEVEL": "WARNING",
                "KASSA_DATA_DIR": str(self.data_dir),
                "KASSA_ADMIN_KEY": self.admin_key,
            }
        )
        if self.role_urls is not None:
            env["KASSA_DATABASE_URL"] = self.role_urls[roles.APP]
            env["KASSA_WORKER_DATABASE_URL"] = self.role_urls[roles.WORKER]
            env["KASSA_MIGRATION_DATABASE_URL"] = self.role_urls[roles.OWNER]
        with self.log_path.open("wb") as log:
            # A session of its own: a Ctrl-C on the benchmark reaches kassa up only through stop().
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kassa.cli.main", "up", *([] if self.with_workers else ["--no-workers"])],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        runtime = self.data_dir / "runtime.json"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not runtime.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kassa up did not start; its output:\n{self.log_tail()}")
            time.sleep(0.2)
        self.nats_url = json.loads(runtime.read_text()).get("nats_url")

    def call(self, method: str, path: str, key: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM (kassa up stops its children), then SIGKILL of the whole group if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"
