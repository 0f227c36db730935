"""Counter increments of the request path are summed per series and applied at the end of the
event loop's iteration (`metrics.count`): none is lost, none counted twice, and a scrape (or a
loop that closed before its flush ran) sees them all."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from kassa.observability import metrics


def counter() -> Counter:
    return Counter("coalesced_test_total", "test", ["outcome"], registry=CollectorRegistry())


def value(c: Counter, outcome: str) -> float:
    return float(c.labels(outcome)._value.get())


class Counting:
    """A counter child that records each `inc` it receives."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def inc(self, amount: float = 1.0) -> None:
        self.calls.append(amount)


def test_without_a_running_loop_an_increment_is_applied_at_once() -> None:
    c = counter()
    metrics.count(c.labels("ok"))
    metrics.count(c.labels("ok"), 2)
    assert value(c, "ok") == 3


async def test_increments_are_summed_per_series_and_applied_once_when_the_iteration_ends() -> None:
    ok, refused = Counting(), Counting()
    for _ in range(5):
        metrics.count(ok)
    metrics.count(refused, 3)
    metrics.count(ok, 0.5)
    assert ok.calls == [] and refused.calls == []  # still in this iteration
    await asyncio.sleep(0)  # the iteration ends; the flush scheduled with the first count runs
    await asyncio.sleep(0)
    assert ok.calls == [5.5] and refused.calls == [3]
    metrics.count(ok)  # a new iteration schedules its own flush
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ok.calls == [5.5, 1]


async def test_a_scrape_flushes_first() -> None:
    c = counter()
    metrics.count(c.labels("ok"), 7)
    metrics.render()  # what /metrics does
    assert value(c, "ok") == 7


def test_increments_left_by_a_loop_that_closed_before_its_flush_are_applied_by_the_next() -> None:
    first, second = Counting(), Counting()
    loop = asyncio.new_event_loop()

    def count_and_stop() -> None:
        metrics.count(first)
        loop.stop()  # the loop ends with this iteration, before the flush scheduled for the next

    loop.call_soon(count_and_stop)
    loop.run_forever()
    loop.close()
    assert first.calls == []

    async def count_again() -> None:
        metrics.count(second)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(count_again())
    assert first.calls == [1.0] and second.calls == [1.0]


def histogram_samples(h: Histogram, route: str = "/a") -> dict[tuple[str, str], float]:
    """One series' samples (bucket, sum, count) by (sample name, upper bound)."""
    return {
        (s.name, s.labels.get("le", "")): s.value
        for m in h.collect()
        for s in m.samples
        if "created" not in s.name and s.labels["route"] == route
    }


async def test_observations_are_applied_when_the_iteration_ends_as_one_observe_each_would() -> None:
    buckets = (0.001, 0.01, 0.1, 1.0)
    coalesced = Histogram("coalesced_test_seconds", "test", ["route"], buckets=buckets, registry=CollectorRegistry())
    direct = Histogram("direct_test_seconds", "test", ["route"], buckets=buckets, registry=CollectorRegistry())
    # Below, on and above bounds, past the last one (the +Inf bucket) and zero.
    amounts = [0.0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.7, 1.0, 3.0, 3.0, 250.0]
    for amount in amounts:
        metrics.observe(coalesced.labels("/a"), amount)
        direct.labels("/a").observe(amount)
    metrics.observe(coalesced.labels("/b"), 0.02)
    direct.labels("/b").observe(0.02)
    assert coalesced.labels("/a")._sum.get() == 0  # still in this iteration
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    expected = {(name.replace("direct", "coalesced"), le): v for (name, le), v in histogram_samples(direct).items()}
    got = histogram_samples(coalesced)
    assert got.keys() == expected.keys()
    for key, v in expected.items():
        assert got[key] == pytest.approx(v, rel=1e-12), key
    assert got[("coalesced_test_seconds_count", "")] == len(amounts)
    assert histogram_samples(coalesced, "/b")[("coalesced_test_seconds_bucket", "0.1")] == 1


async def test_observations_are_applied_once_and_a_scrape_flushes_them_first() -> None:
    h = Histogram("scraped_test_seconds", "test", ["route"], buckets=(0.1, 1.0), registry=CollectorRegistry())
    metrics.observe(h.labels("/a"), 0.5)
    metrics.observe(h.labels("/a"), 0.05)
    metrics.render()  # what /metrics does
    assert h.labels("/a")._sum.get() == pytest.approx(0.55)
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the iteration's flush finds nothing left: not applied twice
    samples = histogram_samples(h)
    assert samples[("scraped_test_seconds_bucket", "0.1")] == 1
    assert samples[("scraped_test_seconds_bucket", "1.0")] == 2
    assert samples[("scraped_test_seconds_count", "")] == 2


def test_without_a_running_loop_an_observation_is_applied_at_once() -> None:
    h = Histogram("direct_now_test_seconds", "test", ["route"], buckets=(0.1,), registry=CollectorRegistry())
    metrics.observe(h.labels("/a"), 0.05)
    assert histogram_samples(h)[("direct_now_test_seconds_bucket", "0.1")] == 1


class _Transfer:
    status, currency, posted_amount = "posted", "SEK", 250


class _Applied:
    transfer, created = _Transfer(), True


class _Refused:
    code = "insufficient_funds"


def outcome_values() -> tuple[float, float, float, float]:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return (
        sample("kassa_transactions_total", {"product": "transfer", "outcome": "ok"}),
        sample("kassa_transactions_total", {"product": "transfer", "outcome": "insufficient_funds"}),
        sample("kassa_money_moved_minor_units_total", {"currency": "SEK"}),
        sample("kassa_transfers_total", {"outcome": "ok"})
        + 1000 * sample("kassa_transfers_total", {"outcome": "insufficient_funds"}),
    )


async def test_an_outcome_counts_in_each_of_its_series_once_the_iteration_ends() -> None:
    before = outcome_values()
    for _ in range(3):
        metrics.observe_outcome("transfer", _Applied(), "ok")
    metrics.observe_outcome("transfer", _Refused(), "insufficient_funds")
    metrics.observe_outcome("transfer", _Applied())  # no transfers_outcome: not in kassa_transfers_total
    assert outcome_values() == before
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    after = outcome_values()
    assert [a - b for a, b in zip(after, before, strict=True)] == [4, 1, 4 * 250, 3 + 1000]


def test_without_a_running_loop_an_outcome_and_a_request_are_counted_at_once() -> None:
    before = outcome_values()
    metrics.observe_outcome("transfer", _Applied(), "ok")
    assert [a - b for a, b in zip(outcome_values(), before, strict=True)] == [1, 0, 250, 1]
    requests = counter().labels("ok")
    latency = Histogram("served_test_seconds", "test", buckets=(0.1,), registry=CollectorRegistry())
    metrics.served(requests, latency, 0.05)
    assert requests._value.get() == 1
    assert histogram_samples_unlabelled(latency)[("served_test_seconds_bucket", "0.1")] == 1


async def test_a_served_request_is_counted_and_observed_when_the_iteration_ends() -> None:
    requests = counter().labels("ok")
    latency = Histogram("served_later_test_seconds", "test", buckets=(0.1, 1.0), registry=CollectorRegistry())
    metrics.served(requests, latency, 0.05)
    metrics.served(requests, latency, 0.5)
    assert requests._value.get() == 0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    samples = histogram_samples_unlabelled(latency)
    assert requests._value.get() == 2
    assert samples[("served_later_test_seconds_bucket", "0.1")] == 1
    assert samples[("served_later_test_seconds_bucket", "1.0")] == 2
    assert samples[("served_later_test_seconds_sum", "")] == pytest.approx(0.55)


def histogram_samples_unlabelled(h: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value for m in h.collect() for s in m.samples if "created" not in s.name
    }
