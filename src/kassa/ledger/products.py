"""Product writes: a product's own rows and events, committed in the ledger's coalesced transaction.

A product (a purchase, an entitlement, a payroll item) hands the ledger its postings together
with a `ProductWrite`: a `ProductWriter` (one per product type, shared by its jobs) and the
job's own payload. After the batch's ledger write, still inside the same database transaction,
the engine calls each writer once with every `(payload, applied)` pair of its jobs whose
postings were applied in this batch, in job order; the writer inserts its rows set-based (one
statement for the lot) and returns the outbox events it wants written with them. A job whose
postings failed (insufficient funds, ...) or were applied earlier (an identical retry by id, an
Idempotency-Key replay) is never handed to the writer, so a product row exists exactly when
its money moved. A writer that raises fails the whole batch; the batcher then retries its jobs
one by one, so only the job whose product write fails is refused.

A product whose pending transactions can expire (a top-up the provider never answers) also
registers an `ExpiryWriter` with `LedgerService.on_expiry`: the engine calls it once per batch
with every transaction that expired in that batch, whichever way it expired (the sweeper, or a
post that found it past its timeout), inside the same database transaction, so the product's
row follows the ledger's expiry atomically and never lags behind it after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.events.outbox import NewEvent
    from kassa.ledger.domain.model import Transaction
    from kassa.ledger.domain.posting import Applied
    from kassa.ledger.domain.transactions import TransactionApplied
    from kassa.store.pool import Conn

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)


class ProductWriter(Protocol[P_contra]):
    """Writes one product type's rows for the jobs of a batch whose postings were applied."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[P_contra, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        """Insert the rows (set-based) inside the ledger's transaction; return outbox events.
        `now` is the batch's database time, the `created_at` of its ledger rows."""
        ...


class ExpiryWriter(Protocol):
    """Follows, inside the ledger's transaction, the pending transactions a batch expired."""

    async def expired(self, conn: Conn, transactions: Sequence[Transaction], now: datetime) -> Sequence[NewEvent]:
        """Update the product's rows of those `transactions` that are its own (set-based) and
        return the outbox events to write with them; others' transactions are ignored."""
        ...


@dataclass(frozen=True, slots=True)
class ProductWrite(Generic[P]):
    """What a job carries besides its postings: whose rows to write, and this job's payload."""

    writer: ProductWriter[P]
    payload: P


async def run_product_writes(
    conn: Conn, writes: Sequence[tuple[ProductWrite[Any], Applied | TransactionApplied]], now: datetime
) -> list[NewEvent]:
    """Call each writer once, in order of first appearance, with its jobs' pairs in job order."""
    groups: dict[int, tuple[ProductWriter[Any], list[tuple[Any, Applied | TransactionApplied]]]] = {}
    for write, applied in writes:
        groups.setdefault(id(write.writer), (write.writer, []))[1].append((write.payload, applied))
    events: list[NewEvent] = []
    for writer, items in groups.values():
        events.extend(await writer.write(conn, items, now))
    return events


async def run_expiry_writers(
    conn: Conn, writers: Sequence[ExpiryWriter], transactions: Sequence[Transaction], now: datetime
) -> list[NewEvent]:
    """Hand the batch's expired transactions to every registered writer, in registration order."""
    events: list[NewEvent] = []
    for writer in writers:
        events.extend(await writer.expired(conn, transactions, now))
    return events
