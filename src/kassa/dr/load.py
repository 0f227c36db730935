"""The drill's transfer load: clients that behave like careful real ones.

Each client sends one transfer at a time with its own id and Idempotency-Key, and retries the
very same request (same key, same body) after any failure until it is acknowledged: that is
what makes "acknowledged" the right unit for RPO. A transfer the client never saw acknowledged
may or may not have committed; its retry either replays the stored answer or applies it once.
The target URL is read before every attempt, so repointing the platform needs no restart here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Callable

CURRENCY = "EUR"
RETRY_PAUSE_S = 0.05  # between attempts of one transfer while the platform is down
REQUEST_TIMEOUT_S = 5.0  # a request to a dead database must fail, not hang the client
AMOUNT_MAX_MINOR = 1_000


@dataclass(frozen=True, slots=True)
class Ack:
    """A transfer the platform confirmed to its client."""

    id: str
    status: int
    at: datetime  # wall clock, when the client read the answer
    at_mono: float
    attempts: int
    replayed: bool
    via: str  # the platform endpoint that answered
    sent_at: datetime  # wall clock, when the answered attempt was sent: its commit came after


@dataclass
class TransferLoad:
    """`clients` concurrent clients moving money between `wallets` (funded, no overdraft)."""

    target: Callable[[], str]
    api_key: str
    wallets: list[str]
    clients: int
    seed: int = 7
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    acks: dict[str, Ack] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _inflight: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        invariant(len(self.wallets) >= 2, "transfers need two different wallets")
        self._go.set()
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]

    async def pause(self) -> None:
        """Stop starting transfers and wait until none is in flight."""
        self._go.clear()
        while self._inflight:
            await asyncio.sleep(0.005)

    def resume(self) -> None:
        self._go.set()

    async def stop(self) -> None:
        """Let every client finish (or give up on) the transfer it has in hand, then end."""
        self._stopping = True
        self._go.set()
        await asyncio.gather(*self._tasks)

    def first_ack_via(self, endpoint: str) -> Ack | None:
        served = [a for a in self.acks.values() if a.via == endpoint]
        return min(served, key=lambda a: a.at_mono) if served else None

    def acked_before(self, when: datetime) -> set[str]:
        return {a.id for a in self.acks.values() if a.status == 201 and a.at < when}

    async def _client(self, number: int) -> None:
        rng = random.Random(self.seed * 1_000 + number)  # noqa: S311 - load shape, not secrets
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
            for n in range(10**9):
                # Re-checked after waking: a pause that came after the wake-up still holds.
                while not self._go.is_set():
                    await self._go.wait()
                if self._stopping:
                    return
                debit, credit = rng.sample(self.wallets, 2)
                body = {
                    "id": f"dr-{number}-{n}",
                    "debit_account_id": debit,
                    "credit_account_id": credit,
                    "amount": rng.randint(1, AMOUNT_MAX_MINOR),
                    "currency": CURRENCY,
                }
                self._inflight += 1
                try:
                    await self._until_acknowledged(http, body)
                finally:
                    self._inflight -= 1

    async def _until_acknowledged(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        transfer_id = str(body["id"])
        self.sent[transfer_id] = body
        for attempt in range(1, 10**9):
            response, via, sent_at = None, self.target(), datetime.now(UTC)
            with contextlib.suppress(httpx.HTTPError):
                response = await http.post(f"{via}/v1/transfers", json=body, headers={"Idempotency-Key": transfer_id})
            if response is not None and response.status_code in (201, 422):
                # 422 is a business answer (e.g. insufficient funds), stored for replay like a 201.
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                now = datetime.now(UTC)
                self.acks[transfer_id] = Ack(
                    transfer_id, response.status_code, now, time.monotonic(), attempt, replayed, via, sent_at
                )
                return
            self.failures["transport" if response is None else str(response.status_code)] += 1
            if self._stopping:
                return  # never acknowledged: it may or may not have committed
            await asyncio.sleep(RETRY_PAUSE_S)


__all__ = ["CURRENCY", "Ack", "TransferLoad"]
