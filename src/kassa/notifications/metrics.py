"""Prometheus metrics of webhook delivery (registered on the default registry at first import;
no I/O). Pending and dead deliveries are visible per endpoint through the deliveries API; these
are the fleet-wide rates and latencies an operator alerts on."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

attempts_total = Counter(
    "kassa_webhook_attempts_total",
    "Webhook delivery attempts by outcome (succeeded, retry, failed, dead)",
    ["outcome"],
)
attempt_seconds = Histogram(
    "kassa_webhook_attempt_seconds",
    "Duration of one webhook HTTP attempt",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
delivery_delay_seconds = Histogram(
    "kassa_webhook_delivery_delay_seconds",
    "From a delivery's enqueueing to its successful attempt",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 6 * 3600, 24 * 3600),
)
