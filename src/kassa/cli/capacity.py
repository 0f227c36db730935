"""`kassa capacity plan --schedule events.yaml`: replicas, Aurora ACUs and pool sizes for each
live event, rendered as Kubernetes CronJobs and Terraform variable overrides."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from kassa.capacity import Step, Target

_REPO_BENCH_RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - this command talks to a person


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kassa.capacity import Assumptions

    parser = sub.add_parser("capacity", help="capacity planning")
    csub = parser.add_subparsers(dest="capacity_command", required=True)
    plan = csub.add_parser("plan", help="pre-warming plan from an event schedule")
    plan.add_argument("--schedule", type=Path, required=True, help="events YAML (start, end, audience, price)")
    plan.add_argument("--bench-results", type=Path, default=_REPO_BENCH_RESULTS, help="where `make bench` wrote")
    plan.add_argument("--out", type=Path, help="write plan.json, kubernetes.yaml and terraform/*.tfvars.json here")
    plan.add_argument("--namespace", default="kassa")
    plan.add_argument("--release", default="kassa", help="the Helm release (HPA names <release>-api, ...)")
    for f in fields(Assumptions):
        flag = "--" + f.name.replace("_", "-")
        plan.add_argument(flag, type=type(f.default), default=f.default, help=f"assumption (default {f.default})")
    plan.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from kassa.capacity import Assumptions, Target, event_load, measured_unit_cost, parse_schedule, plan_steps
    from kassa.capacity.errors import CapacityError
    from kassa.capacity.render import plan_document, render_kubernetes, render_tfvars

    assumptions = Assumptions(**{f.name: getattr(args, f.name) for f in fields(Assumptions)})
    target = replace(Target(), namespace=args.namespace, release=args.release)
    try:
        events = parse_schedule(args.schedule.read_text())
        cost = measured_unit_cost(args.bench_results)
    except CapacityError as exc:
        _say(f"{exc.code}: {exc.detail}")
        return 2
    loads = [event_load(e, assumptions) for e in events]
    steps = plan_steps(events, cost, assumptions)
    _say(
        f"cost per transfer (CPU ms, from {cost.source}): api {cost.api_ms}, workers {cost.worker_ms},"
        f" postgres {cost.postgres_ms}; {assumptions.transfers_per_purchase} transfers per purchase"
    )
    for load in loads:
        _say(
            f"  {load.event.name}: {load.purchases} purchases, peak {load.peak_purchases_per_s:.1f}/s,"
            f" gross {load.gross_minor} {load.event.currency} minor units"
        )
    for line in _step_lines(steps, target):
        _say(line)
    if args.out:
        _write(
            args.out,
            plan_document(loads, steps, cost, assumptions, target),
            render_kubernetes(steps, target),
            render_tfvars(steps, target),
        )
        _say(f"written to {args.out}")
    return 0


def _step_lines(steps: list[Step], target: Target) -> list[str]:
    from kassa.capacity.model import aurora_max_connections

    now = datetime.now(UTC)
    lines = []
    for s in steps:
        c = s.capacity
        lines.append(
            f"  from {s.at.astimezone(UTC):%Y-%m-%d %H:%M}Z [{', '.join(s.events) or 'baseline'}]:"
            f" api {c.api_replicas},"
            f" workers {c.worker_replicas}, Aurora min {c.aurora_min_acu} ACU, pool {c.api_pool_per_process}"
            f" per API process, {c.db_connections} connections at most"
        )
        if s.at < now:
            lines.append("    warning: this step is in the past; its CronJob would fire next year")
        if c.api_replicas > target.api_max_replicas:
            lines.append(f"    note: above the chart's maxReplicas {target.api_max_replicas}; the CronJob raises it")
        if c.aurora_min_acu > target.aurora_max_acu:
            lines.append(f"    note: above Aurora's maximum {target.aurora_max_acu} ACU; raise aurora_max_acu first")
        if c.db_connections > aurora_max_connections(max(c.aurora_min_acu, target.aurora_max_acu)):
            lines.append("    note: more client connections than Aurora's max_connections; RDS Proxy must pool them")
    return lines


def _write(out: Path, plan: dict[str, object], manifests: str, tfvars: dict[str, dict[str, float]]) -> None:
    (out / "terraform").mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    (out / "kubernetes.yaml").write_text(manifests)
    for old in (out / "terraform").glob("*.tfvars.json"):
        old.unlink()
    for name, values in tfvars.items():
        (out / "terraform" / name).write_text(json.dumps(values, indent=2) + "\n")
