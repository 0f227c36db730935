"""Rows of top-ups, withdrawals, provider callbacks and payment exceptions.

The writers are `ProductWriter`s: the ledger calls them inside its coalesced transaction with
the jobs whose postings were applied, so a top-up row exists exactly when its pending
transaction does, and its status changes exactly when that transaction is posted or voided.
Each writes set-based: one statement per table for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uuid_utils

from kassa.events.outbox import NewEvent
from kassa.payments.domain.movements import Topup, Withdrawal, movement_data

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from asyncpg import Record

    from kassa.ledger import Applied, TransactionApplied
    from kassa.payments.domain.providers import ProviderEvent
    from kassa.store.pool import Conn

_TOPUP_COLUMNS = (
    "tenant_id, id, wallet_id, amount, currency, provider, transaction_id, card_last4, status, failure_code,"
    " provider_object_id, created_at, updated_at, review_id, review_status, charged"
)
_WITHDRAWAL_COLUMNS = (
    "tenant_id, id, wallet_id, amount, currency, provider, transaction_id, return_transaction_id,"
    " destination_last4, status, failure_code, provider_object_id, created_at, updated_at, review_id, review_status"
)
_EVENT_TYPES = {
    ("topup", "succeeded"): "TopupSucceeded",
    ("topup", "failed"): "TopupFailed",
    ("withdrawal", "succeeded"): "WithdrawalSucceeded",
    ("withdrawal", "failed"): "WithdrawalFailed",
    ("withdrawal", "returned"): "WithdrawalReturned",
}


class PendingInserts:
    """Writes the pending top-up or withdrawal rows of a batch (one writer per table)."""

    def __init__(self, table: str) -> None:
        assert table in ("topups", "withdrawals")
        self.table = table

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Topup | Withdrawal, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        rows = [item for item, _ in applied]
        if self.table == "topups":
            columns = "tenant_id, id, wallet_id, amount, currency, provider, transaction_id, card_last4"
            extra = ""
        else:
            columns = "tenant_id, id, wallet_id, amount, currency, provider, transaction_id, destination_last4"
            extra = ", destination_sealed"
        await conn.execute(
            f"INSERT INTO {self.table} ({columns}, status, created_at, updated_at, review_id, review_status{extra})"
            f" SELECT t, i, w, a, c, p, x, l, 'pending', $9, $9, r, rs{', s' if extra else ''}"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
            " $8::text[], $10::text[], $11::text[], $12::bytea[]) AS u(t, i, w, a, c, p, x, l, r, rs, s)",
            [r.tenant_id for r in rows],
            [r.id for r in rows],
            [r.wallet_id for r in rows],
            [r.amount for r in rows],
            [r.currency for r in rows],
            [r.provider for r in rows],
            [r.transaction_id for r in rows],
            [r.card_last4 if isinstance(r, Topup) else r.destination_last4 for r in rows],
            now,
            [r.review_id for r in rows],
            [r.review_status for r in rows],
            [None if isinstance(r, Topup) else r.destination_sealed for r in rows],
        )
        return []


@dataclass(frozen=True, slots=True)
class Settlement:
    """A status change of a top-up or withdrawal, made by the callback `event` (None when kassa
    itself gave up, e.g. the provider never took the request)."""

    item: Topup | Withdrawal
    status: str
    failure_code: str | None
    event: ProviderEvent | None
    return_transaction_id: str | None = None
    review_status: str | None = None  # a review decision's change (None: the review is untouched)

    @property
    def kind(self) -> str:
        return "topup" if isinstance(self.item, Topup) else "withdrawal"


class Settlements:
    """Applies the status changes of a batch, records their callbacks, returns their events."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Settlement, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        items = [s for s, _ in applied]
        for table, kind in (("topups", "topup"), ("withdrawals", "withdrawal")):
            mine = [s for s in items if s.kind == kind]
            if not mine:
                continue
            extra = (
                ", return_transaction_id = COALESCE(u.r, x.return_transaction_id), destination_sealed ="
                " CASE WHEN u.rs IS NULL THEN x.destination_sealed END"
                if kind == "withdrawal"
                else ""
            )
            await conn.execute(
                f"UPDATE {table} x SET status = u.s, failure_code = u.f, updated_at = $6,"
                f" review_status = COALESCE(u.rs, x.review_status){extra}"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[])"
                " AS u(t, i, s, f, r, rs) WHERE x.tenant_id = u.t AND x.id = u.i",
                [s.item.tenant_id for s in mine],
                [s.item.id for s in mine],
                [s.status for s in mine],
                [s.failure_code for s in mine],
                [s.return_transaction_id for s in mine],
                now,
                [s.review_status for s in mine],
            )
        await record_callbacks(
            conn, [(s.item.tenant_id, s.item.provider, s.event) for s in items if s.event], "applied"
        )
        return [outcome_event(s.item, s.status, s.failure_code, now) for s in items]


def outcome_event(item: Topup | Withdrawal, status: str, failure_code: str | None, now: datetime) -> NewEvent:
    """The event of a top-up's or withdrawal's new status (TopupFailed, WithdrawalReturned, ...)."""
    kind = "topup" if isinstance(item, Topup) else "withdrawal"
    return NewEvent(
        item.tenant_id, _EVENT_TYPES[(kind, status)], kind, item.id, movement_data(item, status, failure_code, now)
    )


async def fail_pending(
    conn: Conn, table: str, keys: Sequence[tuple[str, str, str]], codes: tuple[str, str], now: datetime
) -> list[Topup | Withdrawal]:
    """Mark the still-pending rows among `keys` (tenant, id, transaction id) failed with the first
    code, or the second for a row whose compliance review is still open; returns the rows it
    changed, as they are now. One statement for the lot."""
    assert table in ("topups", "withdrawals")
    if not keys:
        return []
    columns = _TOPUP_COLUMNS if table == "topups" else _WITHDRAWAL_COLUMNS
    rows = await conn.fetch(
        f"UPDATE {table} x SET status = 'failed', updated_at = $5,"
        " failure_code = CASE WHEN x.review_status = 'open' THEN $6 ELSE $4 END"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, i, tx)"
        " WHERE x.tenant_id = u.t AND x.id = u.i AND x.transaction_id = u.tx AND x.status = 'pending'"
        f" RETURNING {', '.join('x.' + c.strip() for c in columns.split(','))}",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        codes[0],
        now,
        codes[1],
    )
    return [_topup(r) if table == "topups" else _withdrawal(r) for r in rows]


async def record_expired_charges(
    conn: Conn, topups: Sequence[Topup], event_type: str, failure_code: str, now: datetime
) -> list[dict[str, Any]]:
    """Payment exceptions for top-ups whose card was charged while held for review and whose hold
    then expired (the card must be refunded); returns their event data. One statement."""
    if not topups:
        return []
    ids = ["pex_" + uuid_utils.uuid7().hex for _ in topups]
    await conn.execute(
        "INSERT INTO payment_exceptions (tenant_id, id, provider, object_type, object_id, event_id, event_type,"
        " status_at_arrival, failure_code, created_at)"
        " SELECT t, i, p, 'topup', o, e, $6, 'pending', $7, $8"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(t, i, p, o, e)",
        [t.tenant_id for t in topups],
        ids,
        [t.provider for t in topups],
        [t.id for t in topups],
        [t.review_id or t.transaction_id for t in topups],
        event_type,
        failure_code,
        now,
    )
    return [
        {
            "id": exception_id,
            "provider": t.provider,
            "object_type": "topup",
            "object_id": t.id,
            "event_id": t.review_id or t.transaction_id,
            "event_type": event_type,
            "status_at_arrival": "pending",
            "failure_code": failure_code,
            "created_at": now,
        }
        for exception_id, t in zip(ids, topups, strict=True)
    ]


async def record_callbacks(conn: Conn, callbacks: list[tuple[str, str, ProviderEvent]], outcome: str) -> int:
    """Record callback deliveries; returns how many were new (0 for a replayed delivery)."""
    if not callbacks:
        return 0
    inserted = await conn.fetch(
        "INSERT INTO provider_callbacks (tenant_id, provider, event_id, signed_at, type, reference, outcome)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        [t for t, _, _ in callbacks],
        [p for _, p, _ in callbacks],
        [e.id for _, _, e in callbacks],
        [e.signed_at for _, _, e in callbacks],
        [e.type for _, _, e in callbacks],
        [e.reference for _, _, e in callbacks],
        [outcome] * len(callbacks),
    )
    return len(inserted)


async def seen_delivery(conn: Conn, tenant_id: str, provider: str, event: ProviderEvent) -> bool:
    """Whether this exact delivery (event id and signature timestamp) was handled before."""
    found = await conn.fetchval(
        "SELECT 1 FROM provider_callbacks WHERE tenant_id = $1 AND provider = $2 AND event_id = $3 AND signed_at = $4",
        tenant_id,
        provider,
        event.id,
        event.signed_at,
    )
    return found is not None


def _topup(row: Record) -> Topup:
    return Topup(**{k: row[k] for k in row.keys()})


def _withdrawal(row: Record) -> Withdrawal:
    return Withdrawal(**{k: row[k] for k in row.keys()})


async def get_topup(conn: Conn, tenant_id: str, topup_id: str) -> Topup | None:
    row = await conn.fetchrow(
        f"SELECT {_TOPUP_COLUMNS} FROM topups WHERE tenant_id = $1 AND id = $2", tenant_id, topup_id
    )
    return None if row is None else _topup(row)


async def get_withdrawal(conn: Conn, tenant_id: str, withdrawal_id: str) -> Withdrawal | None:
    row = await conn.fetchrow(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals WHERE tenant_id = $1 AND id = $2", tenant_id, withdrawal_id
    )
    return None if row is None else _withdrawal(row)


async def set_provider_object(conn: Conn, table: str, tenant_id: str, item_id: str, object_id: str) -> None:
    assert table in ("topups", "withdrawals")
    await conn.execute(
        f"UPDATE {table} SET provider_object_id = $3 WHERE tenant_id = $1 AND id = $2 AND provider_object_id IS NULL",
        tenant_id,
        item_id,
        object_id,
    )


async def record_exception(
    conn: Conn, exception_id: str, kind: str, item: Topup | Withdrawal, event: ProviderEvent
) -> dict[str, Any]:
    """An event that contradicts what was applied, kept for an operator; returns its event data."""
    row = await conn.fetchrow(
        "INSERT INTO payment_exceptions (tenant_id, id, provider, object_type, object_id, event_id, event_type,"
        " status_at_arrival, failure_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at",
        item.tenant_id,
        exception_id,
        item.provider,
        kind,
        item.id,
        event.id,
        event.type,
        item.status,
        event.failure_code,
    )
    assert row is not None  # INSERT ... RETURNING
    return {
        "id": exception_id,
        "provider": item.provider,
        "object_type": kind,
        "object_id": item.id,
        "event_id": event.id,
        "event_type": event.type,
        "status_at_arrival": item.status,
        "failure_code": event.failure_code,
        "created_at": row["created_at"],
    }


async def list_exceptions(conn: Conn, tenant_id: str, before_seq: int | None, limit: int) -> list[Record]:
    return list(
        await conn.fetch(
            "SELECT seq, id, provider, object_type, object_id, event_id, event_type, status_at_arrival, failure_code,"
            " created_at FROM payment_exceptions WHERE tenant_id = $1 AND ($2::bigint IS NULL OR seq < $2)"
            " ORDER BY seq DESC LIMIT $3",
            tenant_id,
            before_seq,
            limit,
        )
    )
