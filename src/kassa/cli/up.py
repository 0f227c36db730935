"""`kassa up`: the whole platform on one machine (what `make run` calls).

Starts an embedded PostgreSQL (unless KASSA_DATABASE_URL is set) and an embedded NATS JetStream
(unless KASSA_NATS_URL or KASSA_KAFKA_BOOTSTRAP is set), applies migrations, makes sure an admin
key exists, then runs the `api` and `worker all` roles as child processes. Every child (and the
embedded servers) is supervised: one that dies is restarted with backoff and logged once, never a
reason to stop the platform (see `kassa.cli.supervisor`). Ctrl-C or SIGTERM stops the children,
then the embedded servers, cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kassa.cli.runtime import write_runtime
from kassa.cli.supervisor import ChildProcess, EmbeddedNatsChild, EmbeddedPostgresChild, Supervisor
from kassa.settings import Settings, without_password
from kassa.store.backup import archive_options, prepare_backup_dir
from kassa.store.embedded import EmbeddedPostgres, free_port, write_private
from kassa.store.master_key import ensure_master_key
from kassa.store.migrate import migrate

if TYPE_CHECKING:
    import argparse

_READY_TIMEOUT_S = 60
_TICK_S = 0.25


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("up", help="start the whole platform on embedded defaults")
    parser.add_argument("--no-workers", action="store_true", help="run only the API role")
    parser.set_defaults(func=run)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def stale_kassa_holder(port: int) -> tuple[int, str] | None:
    """(pid, command line) of a kassa process listening on `port`, if one does: a leftover of
    an earlier run that must be stopped, not silently shared (SO_REUSEPORT would let the old and
    the new server take turns answering)."""
    import psutil

    # Any listener on the port counts, whatever its address: a wildcard bind overlaps `host`.
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port or conn.pid is None:
            continue
        try:
            proc = psutil.Process(conn.pid)
            cmdline = " ".join(proc.cmdline())
            environ = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "kassa" in cmdline or "KASSA_DATABASE_URL" in environ:
            return conn.pid, cmdline
    return None


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - this command talks to a person


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = dict(os.environ)
        self.postgres: EmbeddedPostgres | None = None
        self.nats: Any = None
        self.supervisor = Supervisor(_say)
        self.port = settings.http_port

    def claim_data_dir(self) -> bool:
        """One `kassa up` per data directory; a pid file left by a killed one is taken over."""
        pid_file = self.settings.data_dir / "up.pid"
        if pid_file.exists():
            try:
                other = int(pid_file.read_text().strip())
                # Alive and still a kassa process (not a reused pid)?
                alive = b"kassa" in Path(f"/proc/{other}/cmdline").read_bytes()
            except (ValueError, OSError):
                alive = False  # stale: that kassa up is gone
            if alive:
                if other != os.getpid():
                    _say(f"kassa up is already running on {self.settings.data_dir} (pid {other})")
                    return False
        pid_file.write_text(str(os.getpid()))
        return True

    def start_stores(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(s.data_dir, 0o755)  # noqa: S103 - the embedded server runs as an unprivileged user
        if s.database_url is None:
            # Continuous WAL archiving, so `kassa restore --to` can reach any instant since the
            # oldest base backup (`kassa backup`).
            archive = archive_options(prepare_backup_dir(s.backup_dir)) if s.wal_archive else {}
            self.postgres = EmbeddedPostgres(root=s.data_dir / "postgres", options=archive)
            self.postgres.start()
        self.db_urls = database_urls(s, self.postgres)
        self.env.update(child_database_env(self.db_urls))
        self.env.pop("KASSA_MIGRATION_DATABASE_URL", None)
        _say(f"PostgreSQL{' (embedded)' if self.postgres else ''}: {without_password(self.db_urls['database_url'])}")
        # Generated only at its default place: a configured KASSA_MASTER_KEY_FILE that is missing
        # is a mistake to report (a new key would orphan every secret sealed under the old one).
        if s.master_key_file is None and ensure_master_key(s.master_key_path):
            _say(f"master key generated: {s.master_key_path}")
        self.env["KASSA_MASTER_KEY_FILE"] = str(s.master_key_path)
        if s.event_bus == "nats" and s.nats_url is None:
            from kassa.events.bus.embedded_nats import EmbeddedNats

            self.nats = EmbeddedNats(s.data_dir / "nats")
            self.env["KASSA_NATS_URL"] = self.nats.start()
            _say(f"NATS JetStream (embedded): {self.nats.address}")
        if self.postgres is not None:
            self.supervisor.add(EmbeddedPostgresChild(self.postgres))
        if self.nats is not None:
            self.supervisor.add(EmbeddedNatsChild(self.nats))
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            # API and workers write their metrics here; the API's /metrics serves them all.
            metrics_dir = s.data_dir / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    def choose_port(self) -> bool:
        """The API port: refuse while a stale kassa process holds it; otherwise, when the default
        port is taken by something else and none was asked for, pick a free one. Port 0 asks
        for a free one: picked here, once, so that every HTTP worker, every restart of the API
        and the sandbox provider's callback URL use the same port, and the banner prints it."""
        s = self.settings
        port = s.http_port
        if port == 0:
            port = free_port(s.http_host)
            _say(f"KASSA_HTTP_PORT=0: using free port {port} on {s.http_host}")
        elif not _port_free(s.http_host, port):
            stale = stale_kassa_holder(port)
            if stale is not None:
                pid, cmdline = stale
                _say(
                    f"port {port} on {s.http_host} is held by a stale kassa process (pid {pid}: {cmdline});"
                    f" stop it first (kill {pid}), then start again"
                )
                return False
            if "KASSA_HTTP_PORT" in os.environ:
                _say(f"port {port} on {s.http_host} is taken (KASSA_HTTP_PORT={port})")
                return False
            port = free_port(s.http_host)
            _say(f"port {s.http_port} is taken on {s.http_host}; using {port}")
        self.env["KASSA_HTTP_PORT"] = str(port)
        self.port = port
        return True

    async def prepare_database(self) -> str | None:
        from kassa.bootstrap import seal_secrets_at_rest
        from kassa.identity.service import IdentityService
        from kassa.store.pool import create_pool

        # Migrations, sealing secrets left in plaintext (it sees every tenant's rows) and the
        # admin key (which belongs to no tenant) as the schema owner.
        await migrate(self.db_urls["migration_database_url"])
        await seal_secrets_at_rest(self.db_urls["migration_database_url"], self.settings)
        pool = await create_pool(self.db_urls["migration_database_url"], size_max=2)
        try:
            issued = await IdentityService(pool).ensure_admin_key(self.settings.admin_key)
        finally:
            await pool.close()
        # The banner shows the admin key only on the start that generated it, never one that
        # came from KASSA_ADMIN_KEY: secrets do not belong in logs.
        key_file = self.settings.data_dir / "admin_key"
        if self.settings.admin_key:
            return "from KASSA_ADMIN_KEY (not shown)"
        if issued is not None:
            write_private(key_file, issued.secret)  # 0600 from the start
            return issued.secret
        return f"in {key_file} (generated on an earlier start)" if key_file.exists() else None

    def start_sandbox_provider(self) -> None:
        """The sandbox payment provider as a supervised child on a free port, unless
        KASSA_SANDBOX_URL names one already; it calls back this platform's API, signing with a
        secret generated once under KASSA_DATA_DIR (mode 0600)."""
        s = self.settings
        if s.sandbox_url is not None:
            return
        from kassa.notifications import new_secret
        from kassa.store.master_key import create_private_file

        if s.sandbox_secret_file is None and create_private_file(s.sandbox_secret_path, new_secret() + "\n"):
            _say(f"sandbox provider secret generated: {s.sandbox_secret_path}")
        port = free_port(s.http_host)
        self.env["KASSA_SANDBOX_URL"] = f"http://{s.http_host}:{port}"
        self.env["KASSA_SANDBOX_SECRET_FILE"] = str(s.sandbox_secret_path)
        callback = f"http://{s.http_host}:{self.port}/v1/providers/sandbox/callbacks"
        self.spawn(
            "sandbox-provider",
            *("provider", "sandbox", "--host", s.http_host, "--port", str(port)),
            *("--callback-url", callback, "--secret-file", str(s.sandbox_secret_path)),
        )

    def spawn(self, name: str, *role: str) -> None:
        cmd = [sys.executable, "-m", "kassa.cli.main", *role]
        self.supervisor.add(ChildProcess(name, cmd, self.env))

    def wait_ready(self) -> bool:
        url = f"http://{self.settings.http_host}:{self.port}/readyz"
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(not c.alive() for c in self.supervisor.children):
                return False
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self.supervisor.stop()


def database_urls(settings: Settings, postgres: EmbeddedPostgres | None) -> dict[str, str]:
    """Each role's database URL: the embedded server's provisioned roles, else the settings
    (the migration and worker URLs fall back to KASSA_DATABASE_URL)."""
    if postgres is not None:
        from kassa.store import roles

        urls = postgres.role_urls()
        return {
            "database_url": urls[roles.APP],
            "worker_database_url": urls[roles.WORKER],
            "migration_database_url": urls[roles.OWNER],
            "reporting_database_url": urls[roles.REPORTING],
        }
    assert settings.database_url is not None  # no embedded server only when it is set
    return {
        "database_url": settings.database_url,
        "worker_database_url": settings.worker_url or settings.database_url,
        "migration_database_url": settings.migration_url or settings.database_url,
    }


def child_database_env(urls: dict[str, str]) -> dict[str, str]:
    """The API runs as the application role, the workers as the worker role; neither child gets
    the schema owner's URL."""
    return {"KASSA_DATABASE_URL": urls["database_url"], "KASSA_WORKER_DATABASE_URL": urls["worker_database_url"]}


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    platform = Platform(settings)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not platform.claim_data_dir():
        return 1
    try:
        if not platform.choose_port():
            return 1
        platform.start_stores()
        admin_key = asyncio.run(platform.prepare_database())
        platform.start_sandbox_provider()
        platform.spawn("api", "api")
        if not args.no_workers:
            platform.spawn("worker", "worker", "all")
        if not platform.wait_ready():
            _say("kassa failed to start; see the log lines above")
            return 1
        base = f"http://{settings.http_host}:{platform.port}"
        write_runtime(
            settings,
            {
                **platform.db_urls,
                "nats_url": platform.env.get("KASSA_NATS_URL"),
                "api_url": base,
                "sandbox_url": platform.env.get("KASSA_SANDBOX_URL"),
            },
        )
        _say(
            f"\nkassa is up\n  API:      {base}/v1\n  OpenAPI:  {base}/openapi.json\n"
            f"  Metrics:  {base}/metrics\n  Sandbox payment provider: {platform.env.get('KASSA_SANDBOX_URL')}\n"
            f"  Admin API key: {admin_key or '(set KASSA_ADMIN_KEY)'}\n"
            f"  Data dir: {settings.data_dir}\nPress Ctrl-C to stop."
        )
        while not stopping:
            platform.supervisor.tick()
            time.sleep(_TICK_S)
        return 0
    finally:
        platform.stop()
        Path(settings.data_dir / "runtime.json").unlink(missing_ok=True)
        Path(settings.data_dir / "up.pid").unlink(missing_ok=True)
