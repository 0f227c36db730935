"""The capacity plan's arithmetic, checked against cases computed by hand (see kassa.capacity.model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kassa.capacity import Assumptions, UnitCost, capacity_for, event_load, plan_steps
from kassa.capacity.model import aurora_max_connections
from kassa.capacity.schedule import Event

# Round numbers so that every case below can be done on paper.
COST = UnitCost(api_ms=1.0, worker_ms=0.5, postgres_ms=0.25, source="hand")
DEFAULTS = Assumptions()
T = datetime(2027, 3, 13, 10, 0, tzinfo=UTC)


def event(name: str, start: datetime, hours: float, audience: int, price: int = 999) -> Event:
    return Event(name, start, start + timedelta(hours=hours), audience, price, "EUR")


def test_purchases_peak_rate_and_gross_volume_of_an_event() -> None:
    # 1000 x 0.10 = 100 purchases; half of them in 300 s = 1/6 per second; 100 x 999 minor units.
    load = event_load(event("e", T, 1, 1000), DEFAULTS)
    assert load.purchases == 100
    assert abs(load.peak_purchases_per_s - 1 / 6) < 1e-12
    assert load.gross_minor == 99_900


def test_an_event_conversion_rate_overrides_the_default_and_a_free_event_buys_nothing() -> None:
    custom = Event("e", T, T + timedelta(hours=1), 1000, 500, "EUR", conversion_rate=0.25)
    assert event_load(custom, DEFAULTS).purchases == 250
    assert event_load(event("free", T, 1, 1_000_000, price=0), DEFAULTS).purchases == 0


def test_no_load_keeps_the_baseline() -> None:
    # 6 API pods x 4 processes x pool 4 + 3 worker pods x pool 12 = 96 + 36 connections.
    c = capacity_for(0.0, COST, DEFAULTS)
    assert (c.api_replicas, c.worker_replicas, c.aurora_min_acu) == (6, 3, 8.0)
    assert (c.api_pool_per_process, c.db_connections) == (4, 132)


def test_a_peak_of_4000_purchases_per_second() -> None:
    # 12,000 transfers/s. API: 12 cores / (2 x 0.6) = 10 pods. Workers: 6 cores / (1 x 0.6) = 10.
    # Aurora: 3 cores / (0.25 x 0.6) = 20 ACU. Pool: 300 transfers/s per process x 0.25 ms x 3
    # = 0.225 busy, x 2 rounded up + 2 = 3, below the floor of 4. Connections: 10x4x4 + 10x12.
    c = capacity_for(4000.0, COST, DEFAULTS)
    assert (c.api_replicas, c.worker_replicas, c.aurora_min_acu) == (10, 10, 20.0)
    assert (c.api_pool_per_process, c.db_connections) == (4, 280)
    assert c.peak_transfers_per_s == 12_000


def test_capacity_rounds_up_pods_and_aurora_to_the_next_half_acu() -> None:
    # 12,120 transfers/s: 12.12 / 1.2 = 10.1 -> 11 pods; 6.06 / 0.6 = 10.1 -> 11; 3.03 / 0.15 = 20.2 -> 20.5 ACU.
    c = capacity_for(4040.0, COST, DEFAULTS)
    assert (c.api_replicas, c.worker_replicas, c.aurora_min_acu) == (11, 11, 20.5)


def test_pools_grow_with_the_time_a_transfer_holds_a_connection() -> None:
    # One pod, one process, 300 transfers/s x 10 ms x 3 = 9 connections busy -> 9 x 2 + 2 = 20.
    slow = UnitCost(api_ms=0.001, worker_ms=0.001, postgres_ms=10.0, source="hand")
    single = Assumptions(api_processes_per_pod=1, baseline_api_replicas=1)
    assert capacity_for(100.0, slow, single).api_pool_per_process == 20


def test_overlapping_events_add_their_peaks_and_the_plan_ends_at_the_baseline() -> None:
    # Windows with 30 min lead and cool-down: A 09:30-11:30, B 10:00-12:30.
    a = event("a", T, 1, 2_400_000)  # 240,000 purchases -> 400/s at peak
    b = event("b", T + timedelta(minutes=30), 1.5, 1_200_000)  # 200/s
    steps = plan_steps([a, b], COST, DEFAULTS)
    at = [s.at for s in steps]
    assert at == [T - timedelta(minutes=30), T, T + timedelta(minutes=90), T + timedelta(minutes=150)]
    assert [s.events for s in steps] == [("a",), ("a", "b"), ("b",), ()]
    assert steps[0].capacity == capacity_for(400.0, COST, DEFAULTS)
    assert steps[1].capacity == capacity_for(600.0, COST, DEFAULTS)
    assert steps[2].capacity == capacity_for(200.0, COST, DEFAULTS)
    assert steps[3].capacity == capacity_for(0.0, COST, DEFAULTS)


def test_aurora_max_connections_follow_the_memory_of_the_maximum_acu() -> None:
    # 4 ACU = 8 GiB = 8,589,934,592 bytes / 9,531,392 = 901; 64 ACU hits the 5,000 cap.
    assert aurora_max_connections(4.0) == 901
    assert aurora_max_connections(64.0) == 5000
