"""Prometheus metrics of the event backbone.

Collectors are registered on the default registry when this module is first imported (no I/O
happens). Gauges declare a `multiprocess_mode`, so they aggregate sensibly when
PROMETHEUS_MULTIPROC_DIR puts prometheus_client in multiprocess mode: lag and DLQ size take the
maximum over live processes (every process samples the same database or stream).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

outbox_lag_seconds = Gauge(
    "kassa_outbox_lag_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is drained)",
    multiprocess_mode="livemax",
)
published_total = Counter("kassa_events_published_total", "Outbox events published to the stream by the relay")
relay_batch_seconds = Histogram(
    "kassa_relay_batch_seconds",
    "Time to record and publish one relay batch (its mark goes with the next batch's record)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
relay_leader = Gauge("kassa_relay_leader", "1 while this process holds the relay lease", multiprocess_mode="livesum")
consumer_lag = Gauge(
    "kassa_consumer_lag_events",
    "Events the relay recorded that a consumer has not applied yet (from its position)",
    ["consumer"],
    multiprocess_mode="livemax",
)
consumed_total = Counter(
    "kassa_events_consumed_total", "Deliveries handled by consumers, by outcome", ["consumer", "outcome"]
)
consumer_delay_seconds = Histogram(
    "kassa_consumer_delay_seconds",
    "From the event's occurrence to its effect in a consumer",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
dlq_size = Gauge("kassa_dlq_size", "Open dead letters per consumer", ["consumer"], multiprocess_mode="livemax")
rejected_total = Counter(
    "kassa_events_rejected_total",
    "Broker messages a consumer dropped without applying them, by reason (forged, undecodable, foreign)",
    ["consumer", "reason"],
)
