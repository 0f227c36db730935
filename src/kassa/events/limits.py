"""Named limits of the event backbone (units last).

They live here rather than in `kassa.shared.limits` only because that module belongs to the
ledger work in flight; they are meant to move there unchanged.
"""

from __future__ import annotations

from typing import Final

# Relay
relay_batch_max: Final = 1000  # outbox rows read, published and marked per round trip
# Bytes of one batch message; below the brokers' default maximum message size (NATS
# max_payload and Kafka max.message.bytes are both about 1 MiB).
relay_message_bytes_max: Final = 512 * 1024
relay_idle_poll_s: Final = 0.02  # wait between empty polls; bounds commit-to-publish delay
relay_lease_poll_s: Final = 1.0  # how often a standby relay tries to take the lease
relay_lag_sample_s: Final = 0.5  # refresh of the outbox-lag gauge while a batch is in flight
relay_retry_delay_s_max: Final = 5.0  # cap of the backoff while the broker or database is down

# Consumers
consumer_fetch_max: Final = 10  # messages (batches of up to relay_batch_max events) fetched per pull
consumer_catch_up_batches_max: Final = 20  # batches read back from the outbox per catch-up transaction
consumer_fetch_timeout_s: Final = 1.0  # long-poll of one fetch
consumer_attempts_max: Final = 6  # handler attempts per event before it is dead-lettered
consumer_retry_base_s: Final = 0.2  # first retry delay; doubles each attempt
consumer_retry_delay_s_max: Final = 10.0  # cap of one retry delay (full jitter below it)
consumer_ack_wait_s: Final = 60.0  # broker redelivers an unacked message after this long
consumer_lag_refresh_s: Final = 5.0  # how often consumer lag and DLQ size are sampled

# Replay and dead letters
replay_batch_max: Final = 500  # outbox rows read per page by `kassa events replay`
dlq_page_max: Final = 500  # dead letters listed or replayed per call
dead_letter_error_chars_max: Final = 2000  # stored error text, truncated

# Stream
nats_duplicate_window_s: Final = 10 * 60  # JetStream deduplicates a re-published event id within this
kafka_partitions: Final = 12  # partitions of the events topic when kassa creates it
# Copies of the events topic when kassa creates it (KASSA_KAFKA_REPLICATION_FACTOR): 1 suits a
# single development broker; a cluster with min.insync.replicas=2 (MSK here) needs 3, or every
# acks=all publish fails with NOT_ENOUGH_REPLICAS.
kafka_replication_factor_default: Final = 1
kafka_replication_factor_max: Final = 7
