"""Helpers shared by the notifications integration tests (events, handler calls, draining)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from kassa.events.envelope import Envelope
from kassa.notifications.adapters.http_sender import new_client
from kassa.notifications.consumers import NotificationLogHandler, WebhookFanoutHandler
from kassa.notifications.delivery import DeliveryConfig, deliver_due
from kassa.notifications.domain.retry import RetryPolicy
from kassa.notifications.service import NotificationService
from kassa.shared.clock import utcnow
from kassa.shared.crypto import KeyRing, new_key
from support.receiver import Received, Receiver

__all__ = ["FAST", "KEYS", "Received", "Receiver"]

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.store.pool import Pool

# The master key ring of these tests (what KASSA_MASTER_KEY_FILE holds in a deployment).
KEYS = KeyRing(new_key())

# Retries in milliseconds instead of hours, so that a whole schedule runs inside a test. The
# receivers of these tests listen on loopback, so private targets are allowed explicitly
# (KASSA_WEBHOOK_ALLOW_PRIVATE in a deployment).
FAST = DeliveryConfig(
    policy=RetryPolicy(attempts_max=3, backoff_base_s=0.01, backoff_max_s=0.05),
    batch_max=50,
    inflight_max=50,
    lease_s=2.0,
    poll_interval_s=0.01,
    timeout_s=0.5,
    allow_private=True,
)


def notification_service(pool: Pool, *, allow_private: bool = True, **kwargs: Any) -> NotificationService:
    """The service as these tests use it: the test key ring, loopback receivers allowed."""
    return NotificationService(pool, KEYS, allow_private=allow_private, **kwargs)


def transfer_event(tenant_id: str, event_type: str = "TransferPosted", **data: Any) -> Envelope:
    body: dict[str, Any] = {
        "id": "t-" + uuid.uuid4().hex[:8],
        "status": "posted",
        "amount": 1234,
        "posted_amount": 1234,
        "currency": "EUR",
        "debit_account_id": "alice",
        "credit_account_id": "bob",
        "pending": False,
        "timeout_s": None,
        "expires_at": None,
        "reference": None,
        "metadata": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    body.update(data)
    return Envelope(
        id=str(uuid.uuid4()),
        type=event_type,
        version=1,
        occurred_at=utcnow(),
        tenant_id=tenant_id,
        trace_id=None,
        data=body,
        aggregate_type="transfer",
        aggregate_id=body["id"],
    )


def account_event(tenant_id: str, account_id: str, *, notify: bool = True) -> Envelope:
    """AccountCreated; with `notify` (the default here) the account opts in to the log."""
    data = {
        "id": account_id,
        "currency": "USD",
        "normal_balance": "credit",
        "allow_negative": False,
        "metadata": {"notify": True} if notify else {},
        "created_at": "2026-01-01T00:00:00Z",
    }
    return Envelope(
        id=str(uuid.uuid4()),
        type="AccountCreated",
        version=1,
        occurred_at=utcnow(),
        tenant_id=tenant_id,
        trace_id=None,
        data=data,
        aggregate_type="account",
        aggregate_id=account_id,
    )


async def fan_out(pool: Pool, event: Envelope) -> None:
    """What the consumer runner does: call the handler inside one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await WebhookFanoutHandler().handle(conn, event)


async def log_notifications(pool: Pool, event: Envelope) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await NotificationLogHandler().handle(conn, event)


async def opt_in(pool: Pool, tenant_id: str, *accounts: str) -> list[Envelope]:
    """Create `accounts` with the notify flag, through the handler (as their events would)."""
    events = [account_event(tenant_id, account) for account in accounts]
    for event in events:
        await log_notifications(pool, event)
    return events


async def delivery_statuses(pool: Pool, tenant_id: str) -> list[str]:
    rows = await pool.fetch("SELECT status FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY seq", tenant_id)
    return [r["status"] for r in rows]


async def drain_until(
    pool: Pool, done: Callable[[], Awaitable[bool]], config: DeliveryConfig = FAST, timeout_s: float = 10.0
) -> None:
    """Run delivery passes until `done()`; other tests' leftovers may be claimed too, which is
    why the tests assert on their own tenant's rows rather than on pass results."""
    async with new_client(config.timeout_s, allow_private=config.allow_private) as client:
        async with asyncio.timeout(timeout_s):
            while not await done():
                await deliver_due(pool, client, KEYS, config)
                await asyncio.sleep(0.01)


def all_in(statuses: set[str], pool: Pool, tenant_id: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await delivery_statuses(pool, tenant_id)
        return len(found) == count and set(found) <= statuses

    return check
