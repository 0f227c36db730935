"""The measured cost of a transfer, from the newest `make bench` result (bench/results/*.json).

Purchases do not exist yet, so a purchase is costed as `transfers_per_purchase` single
transfers (Assumptions): a purchase will be one multi-posting transaction in one request, which
pays the HTTP, authentication and idempotency overhead once, so this errs on the generous side.
The figures are CPU milliseconds per committed transfer of the headline configuration's
single-transfer phase, per process role: `api`, `worker` (relay and consumers), `postgres`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kassa.capacity.errors import NoUnitCost
from kassa.capacity.model import UnitCost

if TYPE_CHECKING:
    from pathlib import Path


def newest_result(results_dir: Path) -> Path:
    # The file names are UTC timestamps (2026-11-22T051653Z.json), so they sort by time.
    found = sorted(results_dir.glob("*.json"))
    if not found:
        raise NoUnitCost(f"no benchmark results in {results_dir}; run `make bench` first")
    return found[-1]


def unit_cost_from(result: dict[str, Any], source: str) -> UnitCost:
    """The headline configuration's single-transfer CPU cost. Raises NoUnitCost."""
    try:
        workers = result["headline"]["workers"]
        config = next(c for c in result["configs"] if c["workers"] == workers)
        cpu = config["single"]["cpu"]
        cost = UnitCost(
            api_ms=float(cpu["api_ms_per_transfer"]),
            worker_ms=float(cpu["worker_ms_per_transfer"]),
            postgres_ms=float(cpu["postgres_ms_per_transfer"]),
            source=source,
        )
    except (KeyError, StopIteration, TypeError, ValueError) as exc:
        raise NoUnitCost(f"{source} has no single-transfer CPU figures ({exc!r})") from exc
    if min(cost.api_ms, cost.worker_ms, cost.postgres_ms) <= 0:
        raise NoUnitCost(f"{source} reports a zero CPU cost; the measurement is broken")
    return cost


def measured_unit_cost(results_dir: Path) -> UnitCost:
    path = newest_result(results_dir)
    return unit_cost_from(json.loads(path.read_text()), path.name)


__all__ = ["measured_unit_cost", "newest_result", "unit_cost_from"]
