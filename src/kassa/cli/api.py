"""`kassa api`: the HTTP API role, served by granian (the fastest stack measured here)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from kassa.settings import Settings

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("api", help="serve the HTTP API (granian)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    settings = Settings.from_env()
    if settings.http_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Metrics from every worker process are aggregated through files in this directory.
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    server = Granian(
        "kassa.api.app:create_app",
        factory=True,
        address=settings.http_host,
        port=settings.http_port,
        interface=Interfaces.ASGI,
        workers=settings.http_workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        log_enabled=False,
        backlog=2048,
    )
    server.serve()
    return 0
