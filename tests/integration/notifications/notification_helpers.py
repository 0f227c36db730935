"""Helpers shared by the notifications integration tests (events, handler calls, draining)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from kassa.events.envelope import Envelope
from kassa.notifications.consumers import NotificationLogHandler, WebhookFanoutHandler
from kassa.notifications.delivery import DeliveryConfig, deliver_due
from kassa.notifications.domain.retry import RetryPolicy
from kassa.shared.clock import utcnow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.store.pool import Pool

# Retries in milliseconds instead of hours, so that a whole schedule runs inside a test.
FAST = DeliveryConfig(
    policy=RetryPolicy(attempts_max=3, backoff_base_s=0.01, backoff_max_s=0.05),
    batch_max=50,
    inflight_max=50,
    lease_s=2.0,
    poll_interval_s=0.01,
    timeout_s=0.5,
)


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


def account_event(tenant_id: str, account_id: str) -> Envelope:
    data = {
        "id": account_id,
        "currency": "USD",
        "normal_balance": "credit",
        "allow_negative": False,
        "metadata": {},
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


async def delivery_statuses(pool: Pool, tenant_id: str) -> list[str]:
    rows = await pool.fetch("SELECT status FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY seq", tenant_id)
    return [r["status"] for r in rows]


async def drain_until(
    pool: Pool, done: Callable[[], Awaitable[bool]], config: DeliveryConfig = FAST, timeout_s: float = 10.0
) -> None:
    """Run delivery passes until `done()`; other tests' leftovers may be claimed too, which is
    why the tests assert on their own tenant's rows rather than on pass results."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        async with asyncio.timeout(timeout_s):
            while not await done():
                await deliver_due(pool, client, config)
                await asyncio.sleep(0.01)


def all_in(statuses: set[str], pool: Pool, tenant_id: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await delivery_statuses(pool, tenant_id)
        return len(found) == count and set(found) <= statuses

    return check


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on a free port: answers with the scripted statuses in turn
    (the last one repeats) and records every request it got."""

    statuses: list[int] = field(default_factory=lambda: [200])
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            index = len(self.requests)
            self.requests.append(Received(headers, body))
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.statuses[min(index, len(self.statuses) - 1)]
            reply = b"ok" if status < 300 else b"nope"
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(reply)}\r\nConnection: close\r\n{extra}\r\n".encode()
                + reply
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
