"""The webhook delivery worker: claims due deliveries, POSTs them signed, records every attempt.

It runs off the money path entirely (in `kassa worker ...`), reading rows that the fan-out
consumer enqueued. Each worker keeps up to `inflight_max` requests going and claims more as
slots free up, so one slow receiver occupies one slot rather than stalling a whole batch.
Several workers may run at once: claims use `FOR UPDATE SKIP LOCKED` plus a lease (see
`adapters/delivery_rows.py`). Delivery is at least once: a worker that dies after the receiver
answered but before recording it leads to a second POST once the lease expires, which receivers
de-duplicate by the `Kassa-Event-Id` header.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.notifications import metrics
from kassa.notifications.adapters import delivery_rows, http_sender
from kassa.notifications.domain.retry import Outcome, RetryPolicy, decide, next_attempt_at
from kassa.notifications.domain.signing import SIGNATURE_HEADER, sign
from kassa.observability import tracing
from kassa.shared.clock import utcnow
from kassa.shared.invariants import invariant
from kassa.shared.limits import (
    webhook_delivery_batch_max,
    webhook_delivery_inflight_max,
    webhook_delivery_lease_s,
    webhook_delivery_poll_interval_s,
    webhook_request_timeout_s,
)

if TYPE_CHECKING:
    import httpx

    from kassa.notifications.adapters.delivery_rows import ClaimedDelivery

__all__ = ["DeliveryConfig", "deliver_due", "delivery_headers", "run_delivery_worker"]

log = logging.getLogger(__name__)
# Database trouble a worker outlives: it logs, waits a poll interval and tries again.
_TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch_max: int = webhook_delivery_batch_max
    inflight_max: int = webhook_delivery_inflight_max
    lease_s: float = webhook_delivery_lease_s
    poll_interval_s: float = webhook_delivery_poll_interval_s
    timeout_s: float = webhook_request_timeout_s

    def __post_init__(self) -> None:
        invariant(self.batch_max >= 1 and self.inflight_max >= 1, "workers claim and send something")
        invariant(self.lease_s > self.timeout_s, "a lease outlives the request it covers")


def delivery_headers(claimed: ClaimedDelivery, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(claimed.payload, claimed.secrets, timestamp),
        "Kassa-Event-Id": claimed.event_id,
        "Kassa-Event-Type": claimed.event_type,
        "Kassa-Delivery-Id": claimed.id,
        "Kassa-Delivery-Attempt": str(claimed.attempt_no),
    }


async def _attempt(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, claimed: ClaimedDelivery, config: DeliveryConfig
) -> Outcome:
    """Send one claimed delivery and record the attempt; returns its outcome."""
    headers = delivery_headers(claimed, int(utcnow().timestamp()))
    result = await http_sender.post(client, claimed.url, claimed.payload, headers, config.timeout_s)
    outcome = decide(result.status_code, claimed.attempt_no, config.policy)
    now = utcnow()
    retry_at = (
        next_attempt_at(now, claimed.attempt_no, config.policy, result.retry_after_s)
        if outcome is Outcome.RETRY
        else None
    )
    async with pool.acquire() as conn, conn.transaction():
        current = await delivery_rows.record_attempt(conn, claimed, result, outcome.value, retry_at, now)
    metrics.attempts_total.labels(outcome.value).inc()
    metrics.attempt_seconds.observe(result.duration_ms / 1000)
    if outcome is Outcome.SUCCEEDED:
        metrics.delivery_delay_seconds.observe(max(0.0, (now - claimed.created_at).total_seconds()))
    if not current:
        log.info(
            "webhook delivery %s attempt %d finished after its lease; state left to the newer claim",
            claimed.id,
            claimed.attempt_no,
        )
    if outcome in (Outcome.FAILED, Outcome.DEAD):
        log.warning(
            "webhook delivery %s to endpoint %s %s after %d attempts (last: %s)",
            claimed.id,
            claimed.endpoint_id,
            outcome.value,
            claimed.attempt_no,
            result.status_code or result.error,
        )
    return outcome


async def _claim(pool: asyncpg.Pool[Any], limit: int, config: DeliveryConfig) -> list[ClaimedDelivery]:
    async with pool.acquire() as conn:
        return await delivery_rows.claim_due(conn, utcnow(), config.lease_s, limit)


async def deliver_due(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, config: DeliveryConfig | None = None
) -> list[Outcome]:
    """One pass: claim up to `batch_max` due deliveries, send them concurrently, record them.
    Returns the outcomes (empty when nothing was due). Used by tests and one-shot tooling."""
    config = config or DeliveryConfig()
    claimed = await _claim(pool, config.batch_max, config)
    return list(await asyncio.gather(*(_attempt(pool, client, c, config) for c in claimed)))


async def _pause(stop: asyncio.Event, inflight: set[asyncio.Task[None]], timeout_s: float) -> None:
    """Wait until stop is set, an in-flight attempt finishes, or `timeout_s` passes."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, *inflight}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _guarded_attempt(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, claimed: ClaimedDelivery, config: DeliveryConfig
) -> None:
    try:
        await tracing.webhook_delivery(claimed.payload, _attempt(pool, client, claimed, config))
    except _TRANSIENT as exc:
        # The POST may have happened; the attempt goes unrecorded and the lease brings the
        # delivery back, so the receiver may see it twice (it de-duplicates by event id).
        log.warning("webhook delivery %s: recording attempt failed: %r", claimed.id, exc)


async def run_delivery_worker(
    pool: asyncpg.Pool[Any],
    stop: asyncio.Event,
    *,
    config: DeliveryConfig | None = None,
    client: httpx.AsyncClient | None = None,
) -> None:
    """Deliver webhooks until `stop` is set; then let in-flight attempts finish (each is bounded
    by the request timeout) so that their results are recorded, and return."""
    config = config or DeliveryConfig()
    own_client = client is None
    http = client or http_sender.new_client(config.timeout_s)
    inflight: set[asyncio.Task[None]] = set()
    try:
        while not stop.is_set():
            free = config.inflight_max - len(inflight)
            wanted = min(free, config.batch_max)
            claimed: list[ClaimedDelivery] = []
            if wanted > 0:
                try:
                    claimed = await _claim(pool, wanted, config)
                except _TRANSIENT as exc:
                    log.warning("webhook delivery worker: claiming failed, retrying: %r", exc)
            for item in claimed:
                task = asyncio.create_task(_guarded_attempt(pool, http, item, config))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if wanted > 0 and len(claimed) == wanted and len(inflight) < config.inflight_max:
                continue  # a full claim: more may be due right now
            await _pause(stop, inflight, config.poll_interval_s)
    finally:
        if inflight:
            await asyncio.wait(set(inflight))
        if own_client:
            await http.aclose()
