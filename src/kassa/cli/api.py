"""`kassa api`: the HTTP API role, served by granian (the fastest stack measured here)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

from kassa.settings import Settings

if TYPE_CHECKING:
    import argparse


_MAIN_PID_ENV = "KASSA_API_MAIN_PID"


def worker_app() -> Any:
    """The app factory each granian worker process runs: tie the worker to its main process
    first, then build the ASGI app."""
    from kassa.api.app import create_app
    from kassa.shared.processes import tie_to_parent

    main_pid = os.environ.get(_MAIN_PID_ENV)
    if main_pid:
        tie_to_parent(int(main_pid))
    return create_app()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("api", help="serve the HTTP API (granian)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings

    from kassa.shared.limits import http_header_read_timeout_s, http_worker_stop_timeout_s

    settings = Settings.from_env()
    if settings.http_port == 0:
        # Granian would bind a port nobody is told (and a restart another one): only `kassa up`,
        # which picks the port once and prints it, takes 0.
        sys.stderr.write("kassa api: KASSA_HTTP_PORT=0 needs kassa up to pick the port; set a port from 1 to 65535\n")
        return 2
    if settings.http_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Metrics from every worker process are aggregated through files in this directory.
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Each HTTP worker process ties itself to this one (see worker_app), so killing this process
    # can never leave a worker holding the port.
    os.environ[_MAIN_PID_ENV] = str(os.getpid())
    server = Granian(
        "kassa.cli.api:worker_app",
        factory=True,
        address=settings.http_host,
        port=settings.http_port,
        interface=Interfaces.ASGI,
        workers=settings.http_workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        # The body has its own deadline in the app (read_body); this bounds the request head.
        http1_settings=HTTP1Settings(header_read_timeout=int(http_header_read_timeout_s * 1000)),
        log_enabled=False,
        backlog=2048,
        # A worker that dies is replaced by granian at once (a crash loop still ends the role,
        # and `kassa up` restarts it with backoff).
        respawn_failed_workers=True,
        # A worker that does not finish its graceful stop in time is killed: a stuck shutdown
        # (say, a flush to an unreachable exporter) must not keep the port after its parent died.
        workers_kill_timeout=http_worker_stop_timeout_s,
    )
    server.serve()
    return 0
