"""Counter increments of the request path are summed per series and applied at the end of the
event loop's iteration (`metrics.count`): none is lost, none counted twice, and a scrape (or a
loop that closed before its flush ran) sees them all."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

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
