"""Metric names follow Prometheus conventions with bounded labels, and with tracing off every
hook hands back the very awaitable it got (nothing is allocated on the hot path)."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import kassa.events.metrics
import kassa.notifications.metrics
import kassa.observability.metrics as metrics
from kassa.observability import tracing

_UNBOUNDED = {"tenant_id", "tenant", "account_id", "account", "transfer_id", "event_id", "endpoint_id", "id"}


def _kassa_collectors() -> list[MetricWrapperBase]:
    assert kassa.events.metrics and kassa.notifications.metrics  # imported for their registrations
    return [
        c
        for c in REGISTRY._collector_to_names
        if isinstance(c, MetricWrapperBase) and getattr(c, "_name", "").startswith("kassa_")
    ]


def test_kassa_metrics_use_base_units_suffixes_and_bounded_labels() -> None:
    collectors = _kassa_collectors()
    names = {c._name: c for c in collectors}
    for wanted in (
        "kassa_transactions",
        "kassa_money_moved_minor_units",
        "kassa_holds_expired",
        "kassa_idempotent_replays",
        "kassa_ledger_batch_size",
        "kassa_outbox_lag_seconds",
        "kassa_consumer_lag_events",
        "kassa_webhook_attempts",
        "kassa_webhook_attempt_seconds",
        "kassa_db_pool_connections",
        "kassa_process_cpu_seconds",
        "kassa_process_resident_memory_bytes",
    ):
        assert wanted in names, wanted
    for name, collector in names.items():
        kind = collector._type
        labels = set(collector._labelnames)
        assert not labels & _UNBOUNDED, (name, labels)
        assert not name.endswith(("_ms", "_milliseconds", "_total")), name  # _total is added on exposition
        if kind == "histogram" and ("duration" in name or "latency" in name):
            assert name.endswith("_seconds"), name


def test_an_outcome_counts_its_product_and_the_money_it_posted() -> None:
    class Transfer:
        status, currency, posted_amount = "posted", "JPY", 1234

    class Applied:
        transfer, created = Transfer(), True

    class Refused:
        code = "insufficient_funds"

    before = REGISTRY.get_sample_value("kassa_money_moved_minor_units_total", {"currency": "JPY"}) or 0
    refused = REGISTRY.get_sample_value("kassa_transactions_total", {"product": "t", "outcome": "insufficient_funds"})
    metrics.observe_outcome("t", Applied())
    metrics.observe_outcome("t", Refused())
    assert REGISTRY.get_sample_value("kassa_money_moved_minor_units_total", {"currency": "JPY"}) == before + 1234
    after = REGISTRY.get_sample_value("kassa_transactions_total", {"product": "t", "outcome": "insufficient_funds"})
    assert after == (refused or 0) + 1


async def test_with_tracing_off_the_hooks_return_what_they_were_given() -> None:
    assert not tracing.enabled()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(1)
    tracing.batch_enqueued(future)
    assert tracing._waiting == {}
    assert tracing.batch_applied([(None, future)], future) is future
    assert tracing.consumed("webhooks", [], future) is future
    assert tracing.webhook_delivery(b"{}", future) is future
    assert tracing.traceparent_for("0" * 32) is None
    assert tracing.current_ids() is None
