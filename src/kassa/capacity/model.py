"""The arithmetic of a capacity plan: from events to replicas, Aurora ACUs and pool sizes.

For one event:

    purchases      = floor(expected_audience x conversion_rate)          (0 for a free event)
    peak rate      = purchases x peak_share / peak_window_s              purchases per second
    transfers/s    = peak rate x transfers_per_purchase
    cores(role)    = transfers/s x cpu_ms_per_transfer(role) / 1000      measured by `make bench`
    API replicas   = max(baseline, ceil(cores(api) / (cpu_per_api_pod x target_utilization)))
    worker pods    = max(baseline, ceil(cores(worker) / (cpu_per_worker_pod x target_utilization)))
    Aurora min ACU = max(baseline, ceil_to_half(cores(postgres) / (vcpu_per_acu x target_utilization)))

Events whose windows (start - lead time .. end + cool-down) overlap add their peak rates: the
plan is a list of steps, each holding from its instant until the next one.

Pool sizes follow Little's law: connections busy = transfers/s per API process x the time a
transfer holds a connection (its PostgreSQL CPU time x db_wall_to_cpu, for round trips and WAL
flush waits), doubled for bursts, plus two for health checks and reads.

Nothing here touches money: counts and rates are plain numbers; a price only multiplies the
purchase count into the expected gross volume (integer minor units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kassa.shared.invariants import invariant
from kassa.shared.limits import batcher_inflight_max, db_pool_size_max

if TYPE_CHECKING:
    from kassa.capacity.schedule import Event

_EPSILON = 1e-9  # keeps 2.0000000001 (float noise) from becoming 3
AURORA_ACU_STEP = 0.5
AURORA_ACU_MAX = 256.0
# Aurora PostgreSQL's default max_connections: LEAST(DBInstanceClassMemory / 9531392, 5000),
# with Serverless v2 sized from the maximum ACU (2 GiB each).
_AURORA_BYTES_PER_CONNECTION = 9_531_392
_AURORA_CONNECTIONS_CAP = 5000
_GIB = 2**30


@dataclass(frozen=True, slots=True)
class UnitCost:
    """CPU milliseconds per committed single transfer, per process role (bench results)."""

    api_ms: float
    worker_ms: float
    postgres_ms: float
    source: str


@dataclass(frozen=True, slots=True)
class Assumptions:
    """Every number the plan does not measure, with its default (docs/runbooks/live-event.md)."""

    conversion_rate: float = 0.10  # share of the audience that buys (historical; per event if known)
    peak_share: float = 0.5  # share of an event's purchases that arrive in its peak window
    peak_window_s: float = 300.0  # the rush in the minutes before kick-off
    transfers_per_purchase: int = 3  # payment, creator share, platform fee
    cpu_per_api_pod: float = 2.0  # cores requested per API pod (chart: production values)
    api_processes_per_pod: int = 4  # KASSA_HTTP_WORKERS (chart: production values)
    cpu_per_worker_pod: float = 1.0  # cores requested per consumers pod
    target_utilization: float = 0.6  # headroom for p99 latency and for losing a zone
    vcpu_per_acu: float = 0.25  # Aurora does not publish it; calibrate from a load test
    db_wall_to_cpu: float = 3.0  # connection hold time / PostgreSQL CPU time of a transfer
    lead_time_s: float = 1800.0  # capacity is raised this long before the start (nodes, images)
    cooldown_s: float = 1800.0  # and lowered this long after the end (stragglers, replays)
    baseline_api_replicas: int = 6  # the HPA minima outside events (chart: production values)
    baseline_worker_replicas: int = 3
    baseline_aurora_min_acu: float = 8.0  # deploy/terraform/envs/prod
    worker_pool_size: int = db_pool_size_max

    def __post_init__(self) -> None:
        invariant(0 <= self.conversion_rate <= 1 and 0 < self.peak_share <= 1, "shares are fractions")
        invariant(0 < self.target_utilization <= 1, "a utilization target is a fraction")
        invariant(min(self.peak_window_s, self.cpu_per_api_pod, self.vcpu_per_acu) > 0, "sizes are positive")


@dataclass(frozen=True, slots=True)
class EventLoad:
    event: Event
    purchases: int
    peak_purchases_per_s: float
    gross_minor: int  # purchases x price, in the event's currency


@dataclass(frozen=True, slots=True)
class Capacity:
    api_replicas: int
    worker_replicas: int
    aurora_min_acu: float
    api_pool_per_process: int
    worker_pool_per_process: int
    db_connections: int  # every pool full, all pods: what RDS Proxy must accept from clients
    peak_transfers_per_s: float


@dataclass(frozen=True, slots=True)
class Step:
    """From `at` until the next step, hold `capacity` (for the events named)."""

    at: datetime
    capacity: Capacity
    events: tuple[str, ...]


def ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


def event_load(event: Event, a: Assumptions) -> EventLoad:
    rate = a.conversion_rate if event.conversion_rate is None else event.conversion_rate
    purchases = math.floor(event.expected_audience * rate + _EPSILON) if event.price_minor > 0 else 0
    return EventLoad(event, purchases, purchases * a.peak_share / a.peak_window_s, purchases * event.price_minor)


def capacity_for(purchases_per_s: float, cost: UnitCost, a: Assumptions) -> Capacity:
    """What a sustained peak of `purchases_per_s` needs (the baseline when it is 0)."""
    transfers_per_s = purchases_per_s * a.transfers_per_purchase
    api_cores = transfers_per_s * cost.api_ms / 1000
    worker_cores = transfers_per_s * cost.worker_ms / 1000
    postgres_cores = transfers_per_s * cost.postgres_ms / 1000
    api = max(a.baseline_api_replicas, ceil(api_cores / (a.cpu_per_api_pod * a.target_utilization)))
    workers = max(a.baseline_worker_replicas, ceil(worker_cores / (a.cpu_per_worker_pod * a.target_utilization)))
    acu_needed = postgres_cores / (a.vcpu_per_acu * a.target_utilization)
    acu = max(a.baseline_aurora_min_acu, ceil(acu_needed / AURORA_ACU_STEP) * AURORA_ACU_STEP)
    per_process = transfers_per_s / (api * a.api_processes_per_pod)
    busy = per_process * cost.postgres_ms * a.db_wall_to_cpu / 1000
    pool = max(batcher_inflight_max + 2, ceil(busy * 2) + 2)
    connections = api * a.api_processes_per_pod * pool + workers * a.worker_pool_size
    return Capacity(api, workers, min(acu, AURORA_ACU_MAX), pool, a.worker_pool_size, connections, transfers_per_s)


def aurora_max_connections(max_acu: float) -> int:
    """Aurora PostgreSQL's default max_connections for a Serverless v2 maximum capacity."""
    return min(int(max_acu * 2 * _GIB) // _AURORA_BYTES_PER_CONNECTION, _AURORA_CONNECTIONS_CAP)


def plan_steps(events: list[Event], cost: UnitCost, a: Assumptions) -> list[Step]:
    """The capacity timeline: a step at each instant a window opens or closes, holding the sum of
    the peak rates of the events whose windows cover it (a step identical to the one before is
    dropped). The last step always returns to the baseline."""
    lead, cool = timedelta(seconds=a.lead_time_s), timedelta(seconds=a.cooldown_s)
    loads = [event_load(e, a) for e in events]
    windows = [(load.event.start - lead, load.event.end + cool, load) for load in loads]
    instants = sorted({w[0] for w in windows} | {w[1] for w in windows})
    steps: list[Step] = []
    for at in instants:
        active = [load for begin, end, load in windows if begin <= at < end]
        capacity = capacity_for(sum(load.peak_purchases_per_s for load in active), cost, a)
        names = tuple(load.event.name for load in active)
        if steps and (steps[-1].capacity, steps[-1].events) == (capacity, names):
            continue
        steps.append(Step(at, capacity, names))
    invariant(not steps or not steps[-1].events, "a plan ends back at the baseline")
    return steps


__all__ = [
    "Assumptions",
    "Capacity",
    "EventLoad",
    "Step",
    "UnitCost",
    "aurora_max_connections",
    "capacity_for",
    "event_load",
    "plan_steps",
]
