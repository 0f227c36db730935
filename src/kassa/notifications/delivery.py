"""The webhook delivery worker: claims due deliveries, POSTs them signed, records every attempt.

It runs off the money path entirely (in `kassa worker ...`), reading rows that the fan-out
consumer enqueued. Each worker keeps up to `inflight_max` requests going and claims more as
slots free up, so one slow receiver occupies one slot rather than stalling a whole batch.
Several workers may run at once: claims use `FOR UPDATE SKIP LOCKED` plus a lease (see
`adapters/delivery_rows.py`). Delivery is at least once: a worker that dies after the receiver
answered but before recording it leads to a second POST once the lease expires, which receivers
de-duplicate by the `Kassa-Event-Id` header.

Deliveries connect only to vetted addresses (`adapters/targets.py`): a URL whose host is or
resolves to a refused address gets one failed attempt, with the reason and no reply, and is not
retried. Log lines name a receiver by scheme, host and path, never its query string.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.notifications import metrics
from kassa.notifications.adapters import delivery_rows, http_sender
from kassa.notifications.adapters.secret_store import open_secret
from kassa.notifications.domain.retry import Outcome, RetryPolicy, decide, next_attempt_at
from kassa.notifications.domain.signing import SIGNATURE_HEADER, sign
from kassa.observability import tracing
from kassa.settings import Settings
from kassa.shared.clock import utcnow
from kassa.shared.crypto import DecryptionFailed
from kassa.shared.invariants import invariant
from kassa.shared.limits import (
    webhook_delivery_batch_max,
    webhook_delivery_inflight_max,
    webhook_delivery_lease_s,
    webhook_delivery_poll_interval_s,
    webhook_request_timeout_s,
)
from kassa.shared.redaction import url_for_log
from kassa.store.master_key import load_keyring

if TYPE_CHECKING:
    import httpx

    from kassa.notifications.adapters.delivery_rows import AttemptResult, ClaimedDelivery
    from kassa.shared.crypto import KeyRing

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
    # KASSA_WEBHOOK_ALLOW_PRIVATE: loopback and private receivers allowed (tests, local runs).
    allow_private: bool = False

    def __post_init__(self) -> None:
        invariant(self.batch_max >= 1 and self.inflight_max >= 1, "workers claim and send something")
        invariant(self.lease_s > self.timeout_s, "a lease outlives the request it covers")


def delivery_headers(claimed: ClaimedDelivery, secrets: tuple[str, ...], timestamp: int) -> dict[str, str]:
    """The headers of one attempt; `secrets` are the claimed delivery's secrets, opened."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(claimed.payload, secrets, timestamp),
        "Kassa-Event-Id": claimed.event_id,
        "Kassa-Event-Type": claimed.event_type,
        "Kassa-Delivery-Id": claimed.id,
        "Kassa-Delivery-Attempt": str(claimed.attempt_no),
    }


async def _send(
    client: httpx.AsyncClient, claimed: ClaimedDelivery, keys: KeyRing, config: DeliveryConfig
) -> AttemptResult:
    try:
        secrets = tuple(open_secret(keys, claimed.tenant_id, claimed.endpoint_id, s) for s in claimed.secrets)
    except DecryptionFailed as exc:
        # A wrong or missing master key: nothing can be signed. Recorded as a retryable attempt
        # (no status) so that deliveries resume once the right key is configured.
        log.error("webhook delivery %s: the endpoint's signing secret does not open: %s", claimed.id, exc)
        return delivery_rows.AttemptResult(
            started_at=utcnow(),
            duration_ms=0,
            status_code=None,
            error="signing secret cannot be opened with the configured master key",
            response_excerpt=None,
        )
    headers = delivery_headers(claimed, secrets, int(utcnow().timestamp()))
    return await http_sender.post(client, claimed.url, claimed.payload, headers, config.timeout_s)


async def _attempt(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, claimed: ClaimedDelivery, keys: KeyRing, config: DeliveryConfig
) -> Outcome:
    """Send one claimed delivery and record the attempt; returns its outcome."""
    result = await _send(client, claimed, keys, config)
    outcome = decide(result.status_code, claimed.attempt_no, config.policy, result.target_refused)
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
            "webhook delivery %s to endpoint %s (%s) %s after %d attempts (last: %s)",
            claimed.id,
            claimed.endpoint_id,
            url_for_log(claimed.url),
            outcome.value,
            claimed.attempt_no,
            result.status_code or result.error,
        )
    return outcome


async def _claim(pool: asyncpg.Pool[Any], limit: int, config: DeliveryConfig) -> list[ClaimedDelivery]:
    async with pool.acquire() as conn:
        return await delivery_rows.claim_due(conn, utcnow(), config.lease_s, limit)


async def deliver_due(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, keys: KeyRing, config: DeliveryConfig | None = None
) -> list[Outcome]:
    """One pass: claim up to `batch_max` due deliveries, send them concurrently, record them.
    Returns the outcomes (empty when nothing was due). Used by tests and one-shot tooling; the
    client decides which targets are reachable (use `http_sender.new_client`)."""
    config = config or DeliveryConfig()
    claimed = await _claim(pool, config.batch_max, config)
    return list(await asyncio.gather(*(_attempt(pool, client, c, keys, config) for c in claimed)))


async def _pause(stop: asyncio.Event, inflight: set[asyncio.Task[None]], timeout_s: float) -> None:
    """Wait until stop is set, an in-flight attempt finishes, or `timeout_s` passes."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, *inflight}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _guarded_attempt(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, claimed: ClaimedDelivery, keys: KeyRing, config: DeliveryConfig
) -> None:
    try:
        await tracing.webhook_delivery(claimed.payload, _attempt(pool, client, claimed, keys, config))
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
    keys: KeyRing | None = None,
) -> None:
    """Deliver webhooks until `stop` is set; then let in-flight attempts finish (each is bounded
    by the request timeout) so that their results are recorded, and return.

    Without `config` or `keys` (how the worker role starts it), KASSA_WEBHOOK_ALLOW_PRIVATE and
    the master key file are read from the environment once, here. Raises MasterKeyError when
    the key file is missing or malformed."""
    if config is None or keys is None:
        settings = Settings.from_env()
        config = config or DeliveryConfig(allow_private=settings.webhook_allow_private)
        keys = keys or load_keyring(settings.master_key_path)
    own_client = client is None
    http = client or http_sender.new_client(config.timeout_s, allow_private=config.allow_private)
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
                task = asyncio.create_task(_guarded_attempt(pool, http, item, keys, config))
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
