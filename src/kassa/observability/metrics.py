"""Prometheus metrics of the API process, and the exposition of every process's metrics.

`kassa up` (or `kassa api` with several workers) sets PROMETHEUS_MULTIPROC_DIR before its child
processes start: the API workers and the relay/consumer worker then all write there, and the
API's /metrics aggregates them through the multiprocess collector. A worker run on its own (one
Kubernetes deployment per role) serves its metrics on KASSA_METRICS_PORT instead.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 8192)

http_requests = Counter("kassa_http_requests_total", "HTTP requests", ["route", "method", "status"])
http_latency = Histogram(
    "kassa_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS_S,
)
# Requests whose client hung up before its body was read; they are also counted with status 499.
client_disconnects = Counter("kassa_http_client_disconnects_total", "Clients that hung up mid-request")
transfers = Counter("kassa_transfers_total", "Transfer commands by outcome", ["outcome"])
batch_size = Histogram("kassa_ledger_batch_size", "Commands per ledger transaction", buckets=_BATCH_BUCKETS)
batch_latency = Histogram(
    "kassa_ledger_batch_duration_seconds", "Ledger batch transaction time", buckets=_LATENCY_BUCKETS_S
)
db_pool = Gauge(
    "kassa_db_pool_connections",
    "Database pool connections (size, idle, in_use, max)",
    ["state"],
    multiprocess_mode="livesum",
)
# Labels stay bounded: a product name, a stable error code or "ok"/"replayed", an ISO 4217 code,
# a process role. Never a tenant or an account id.
transactions = Counter(
    "kassa_transactions_total", "Money-moving commands by product and outcome", ["product", "outcome"]
)
money_moved = Counter(
    "kassa_money_moved_minor_units_total", "Minor units posted by money-moving commands, by currency", ["currency"]
)
holds_expired = Counter("kassa_holds_expired_total", "Pending transfers (holds) expired after their timeout")
idempotent_replays = Counter(
    "kassa_idempotent_replays_total", "Requests answered with the stored response of their Idempotency-Key"
)
process_cpu = Counter("kassa_process_cpu_seconds_total", "User and system CPU time of kassa processes", ["role"])
process_memory = Gauge(
    "kassa_process_resident_memory_bytes", "Resident memory of kassa processes", ["role"], multiprocess_mode="livesum"
)
content_type = CONTENT_TYPE_LATEST


def _outcome(result: object) -> tuple[str, str | None, int]:
    """(outcome label, currency, minor units posted) of what the ledger answered: a replay (has
    `status` and `body`), a typed error (has `code`), or an applied change with its `transfer`."""
    code = getattr(result, "code", None)
    if isinstance(code, str):
        return code, None, 0
    if hasattr(result, "body"):
        return "replayed", None, 0
    transfer = getattr(result, "transfer", None)
    if transfer is not None and getattr(result, "created", True) and transfer.status == "posted":
        return "ok", transfer.currency, transfer.posted_amount
    return "ok", None, 0


# Label children by (metric, label values): `labels()` takes the metric's lock and checks and
# joins its label values on every call (about a microsecond each, three per transfer). The
# values are bounded (see above); prometheus_client keeps the same children itself.
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per series and process."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


# Counter increments and histogram observations of the request path, summed per series until the
# end of the event loop's current iteration (`count`, `observe`). In multiprocess mode (`kassa
# up`) every increment takes a lock, a getpid() and a write to the series' mmapped file (0.7 us),
# and a histogram observation is two of them (its sum and its bucket); a coalesced batch of
# transfers resumes all its requests in one iteration, so their increments each become one per
# series (and per bucket). A scrape sees them once the iteration ends (this process's /metrics
# flushes first).
_pending: dict[Any, float] = {}
# Per histogram child: [sum of the amounts, then how many fell in each bucket].
_observed: dict[Any, list[float]] = {}
_flush_on: list[asyncio.AbstractEventLoop | None] = [None]  # the loop that will run `flush`


def _deferred() -> bool:
    """Whether a flush will run at the end of this loop iteration (scheduled now if need be);
    False when no event loop runs in this thread (apply at once)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    # Checked by loop, not by "anything pending": a loop closed before it ran its flush (a test's)
    # must not leave the increments behind for good.
    if _flush_on[0] is not loop:
        _flush_on[0] = loop
        loop.call_soon(flush)
    return True


def count(counter_child: Any, amount: float = 1.0) -> None:
    """`counter_child.inc(amount)`, applied at the end of this loop iteration (at once when no
    event loop runs in this thread)."""
    if _deferred():
        _pending[counter_child] = _pending.get(counter_child, 0.0) + amount
    else:
        counter_child.inc(amount)


def observe(histogram_child: Any, amount: float) -> None:
    """`histogram_child.observe(amount)` (a labelled child, no exemplar), applied at the end of
    this loop iteration (at once when no event loop runs in this thread)."""
    if _deferred():
        _collect(histogram_child, amount)
    else:
        histogram_child.observe(amount)


def _collect(histogram_child: Any, amount: float) -> None:
    """Note what prometheus_client's Histogram.observe would do: the sum grows by the amount, the
    first bucket whose upper bound is at least the amount (none for NaN) by one."""
    bounds: list[float] = histogram_child._upper_bounds
    collected = _observed.get(histogram_child)
    if collected is None:
        collected = _observed[histogram_child] = [0.0] * (len(bounds) + 1)
    collected[0] += amount
    i = bisect_left(bounds, amount)
    if i < len(bounds) and amount <= bounds[i]:
        collected[i + 1] += 1


def _apply_observations(histogram_child: Any, collected: list[float]) -> None:
    """The collected observations: one increment of the sum and one per bucket touched."""
    histogram_child._sum.inc(collected[0])
    buckets = histogram_child._buckets
    for i, n in enumerate(collected[1:]):
        if n:
            buckets[i].inc(n)


def flush() -> None:
    """Apply the increments and observations `count` and `observe` have collected so far."""
    _flush_on[0] = None
    while _pending:
        counter_child, amount = _pending.popitem()
        counter_child.inc(amount)
    while _observed:
        _apply_observations(*_observed.popitem())


# The series one outcome counts in, by (product, outcome, currency, transfers outcome): bounded
# as their labels are (see above).
_outcome_series: dict[tuple[str, str, str | None, str | None], tuple[Any, Any, Any]] = {}


def observe_outcome(product: str, result: object, transfers_outcome: str | None = None) -> None:
    """Count one money-moving command's outcome, and the money it posted; with
    `transfers_outcome`, also one in `kassa_transfers_total` under that label."""
    outcome, currency, amount = _outcome(result)
    key = (product, outcome, currency, transfers_outcome)
    series = _outcome_series.get(key)
    if series is None:
        series = _outcome_series[key] = (
            child(transactions, product, outcome),
            None if currency is None else child(money_moved, currency),
            None if transfers_outcome is None else child(transfers, transfers_outcome),
        )
    commands, moved, transferred = series
    loop = asyncio._get_running_loop()  # `_deferred`, written out: once per money-moving request
    if loop is None:
        commands.inc()
        if moved is not None:
            moved.inc(amount)
        if transferred is not None:
            transferred.inc()
        return
    if _flush_on[0] is not loop:
        _flush_on[0] = loop
        loop.call_soon(flush)
    pending = _pending
    pending[commands] = pending.get(commands, 0.0) + 1.0
    if moved is not None:
        pending[moved] = pending.get(moved, 0.0) + amount
    if transferred is not None:
        pending[transferred] = pending.get(transferred, 0.0) + 1.0


def served(requests_child: Any, latency_child: Any, elapsed_s: float) -> None:
    """`count(requests_child)` and `observe(latency_child, elapsed_s)`: one HTTP request. (Once
    per request: `_deferred` written out, a call fewer.)"""
    loop = asyncio._get_running_loop()  # None, rather than an exception, outside a loop
    if loop is None:
        requests_child.inc()
        latency_child.observe(elapsed_s)
        return
    if _flush_on[0] is not loop:
        _flush_on[0] = loop
        loop.call_soon(flush)
    _pending[requests_child] = _pending.get(requests_child, 0.0) + 1.0
    _collect(latency_child, elapsed_s)


def observe_outcomes(product: str, results: Iterable[object]) -> None:
    """`observe_outcome` for many results (a client batch), one increment per distinct series."""
    outcomes: dict[str, int] = {}
    moved: dict[str, int] = {}
    for result in results:
        outcome, currency, amount = _outcome(result)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if currency is not None:
            moved[currency] = moved.get(currency, 0) + amount
    for outcome, count in outcomes.items():
        child(transactions, product, outcome).inc(count)
    for currency, amount in moved.items():
        child(money_moved, currency).inc(amount)


def observe_batch(size: int, duration_s: float) -> None:
    batch_size.observe(size)
    batch_latency.observe(duration_s)


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)  # type: ignore[no-untyped-call]
        return aggregated
    return REGISTRY


def render() -> bytes:
    flush()
    return generate_latest(registry())


def serve(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    """Serve /metrics on its own port, for roles without the HTTP API."""
    start_http_server(port, host, registry=registry())
