"""`kassa dr drill`: the failover and point-in-time-restore drill (see kassa.dr and docs/dr.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kassa.settings import Settings
from kassa.store.replication import SYNC_COMMIT_LEVELS

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dr", help="disaster recovery drills")
    dsub = parser.add_subparsers(dest="dr_command", required=True)
    drill = dsub.add_parser("drill", help="lose the primary under load, fail over, measure RTO/RPO and PITR")
    drill.add_argument("--mode", default="sync,async", help="sync, async or both (comma-separated, run in turn)")
    drill.add_argument("--sync-commit", choices=SYNC_COMMIT_LEVELS, default="on")
    drill.add_argument("--clients", type=int, default=16)
    drill.add_argument("--wallets", type=int, default=20)
    drill.add_argument("--phase-s", type=float, default=3.0, help="seconds of load between the drill's steps")
    drill.add_argument("--short", action="store_true", help="the bounded form the test suite runs")
    drill.add_argument("--workdir", type=Path, help="keep servers and logs here (default: a temporary directory)")
    drill.add_argument("--keep", action="store_true", help="leave the work directory behind")
    drill.add_argument("--out", type=Path, help="JSON report (default: KASSA_DATA_DIR/dr/<time>.json)")
    drill.set_defaults(func=run_drill)


def run_drill(args: argparse.Namespace) -> int:
    from kassa.dr import Drill, DrillConfig, render_text

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if not modes or any(m not in ("sync", "async") for m in modes):
        print("--mode takes sync, async or both", flush=True)  # noqa: T201
        return 2
    reports = []
    for mode in modes:
        config = DrillConfig(mode=mode, sync_commit=args.sync_commit, clients=args.clients, wallets=args.wallets)
        phase = args.phase_s
        config = replace(config, warmup_s=phase, before_target_s=phase, before_kill_s=phase, after_recovery_s=phase)
        if args.short:
            config = config.short()
        workdir = args.workdir / mode if args.workdir else None
        config = replace(config, workdir=workdir, keep=args.keep)
        report = asyncio.run(Drill(config).run())
        print(render_text(report), flush=True)  # noqa: T201 - the report is the output
        reports.append(report)
    out = args.out or Settings.from_env().data_dir / "dr" / f"{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"drills": reports}, indent=2) + "\n")
    print(f"report written to {out}", flush=True)  # noqa: T201
    return 0 if all(r["verdict"]["ok"] for r in reports) else 1
