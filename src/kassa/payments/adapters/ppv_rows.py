"""Product writes of pay-per-view: purchase and refund rows inside the ledger's transaction.

Each writer is called once per coalesced batch with the jobs whose postings were applied and
writes all their rows with one statement per table (`unnest`), so a purchase row, its
entitlement and its `PurchaseCompleted` event exist exactly when the wallet was charged.

Two rules are enforced by the database inside that same transaction, so concurrent requests
cannot break them whatever the interleaving:
- one active entitlement per customer and content (`entitlements_one_active`): the second of
  two concurrent purchases of the same content fails its product write, so its postings roll
  back with it and nothing is charged (the service answers `already_entitled`);
- refunds are numbered per purchase from the state they were computed on (`refunds_purchase_seq`):
  of two refunds computed from the same state only one commits; the service recomputes the
  other from the new state, so the sum of refunds never exceeds what any leg received.
Every write that changes an entitlement notifies `ENTITLEMENT_CHANNEL` (delivered at commit)
so other processes drop their cached checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.events.outbox import NewEvent
from kassa.ledger import TransactionApplied
from kassa.payments.domain.entitlements import play_duration, window_for
from kassa.shared.clock import to_rfc3339
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.ledger import Applied
    from kassa.payments.domain.content import Access
    from kassa.store.pool import Conn

ENTITLEMENT_CHANNEL = "kassa_entitlements"
_json = msgspec.json.Encoder()


def cache_key(tenant_id: str, customer_id: str, content_id: str) -> str:
    return f"{tenant_id}|{customer_id}|{content_id}"


@dataclass(frozen=True, slots=True)
class PurchaseRow:
    tenant_id: str
    id: str
    entitlement_id: str
    customer_id: str
    content_id: str
    currency: str
    price: int
    platform_fee_bps: int
    platform_fee_min: int
    wallet_account_id: str
    legs: tuple[dict[str, Any], ...]  # {role, customer_id, account_id, amount}, fee first
    access: Access


@dataclass(frozen=True, slots=True)
class RefundRow:
    tenant_id: str
    id: str
    purchase_id: str
    customer_id: str
    content_id: str
    seq: int  # the purchase's refund_count + 1 when the refund was computed
    amount: int
    refund_fee: bool
    reason: str
    legs: tuple[dict[str, Any], ...]  # the purchase's legs with the amounts this refund took back
    refunded_amount_after: int
    refunded_legs_after: tuple[int, ...]
    revokes: bool  # nothing is left unrefunded: the entitlement ends now


async def notify(conn: Conn, keys: list[str]) -> None:
    """Tell every process (at commit) that these entitlement keys changed."""
    await conn.execute(f"SELECT pg_notify('{ENTITLEMENT_CHANNEL}', k) FROM unnest($1::text[]) AS k", keys)


def _transaction_id(applied: Applied | TransactionApplied) -> str:
    invariant(isinstance(applied, TransactionApplied), "a pay-per-view product is a multi-leg transaction")
    assert isinstance(applied, TransactionApplied)  # narrowing for mypy
    return applied.transaction.id


def _columns(rows: Sequence[Any], *names: str) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


class PurchaseWriter:
    """Writes the purchases of a batch, their entitlements and their events."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[PurchaseRow, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        rows = [p for p, _ in applied]
        if not rows:
            return []
        tenants, customers, contents = _columns(rows, "tenant_id", "customer_id", "content_id")
        # An entitlement whose window has ended no longer blocks a new purchase: mark it expired
        # first, so the one-active rule counts only entitlements that still give access.
        await conn.execute(
            "UPDATE entitlements e SET status = 'expired', updated_at = $4"
            " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, c, k)"
            " WHERE e.tenant_id = u.t AND e.customer_id = u.c AND e.content_id = u.k"
            " AND e.status = 'active' AND e.ends_at <= $4",
            tenants,
            customers,
            contents,
            now,
        )
        transaction_ids = [_transaction_id(a) for _, a in applied]
        await conn.execute(
            "INSERT INTO purchases (tenant_id, id, customer_id, content_id, currency, price, platform_fee_bps,"
            " platform_fee_min, wallet_account_id, legs, transaction_id, refunded_legs, created_at)"
            " SELECT t, i, c, k, cur, p, fb, fm, w, l::jsonb, x, r::jsonb, $13 FROM unnest($1::text[], $2::text[],"
            " $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[], $8::bigint[], $9::text[], $10::text[],"
            " $11::text[], $12::text[]) AS u(t, i, c, k, cur, p, fb, fm, w, l, x, r)",
            tenants,
            [r.id for r in rows],
            customers,
            contents,
            *_columns(rows, "currency", "price", "platform_fee_bps", "platform_fee_min", "wallet_account_id"),
            [_json.encode(list(r.legs)).decode() for r in rows],
            transaction_ids,
            [_json.encode([0] * len(r.legs)).decode() for r in rows],
            now,
        )
        windows = [window_for(r.access, now) for r in rows]
        await conn.execute(
            "INSERT INTO entitlements (tenant_id, id, customer_id, content_id, purchase_id, status, starts_at,"
            " ends_at, play_duration_s, created_at, updated_at) SELECT t, i, c, k, p, 'active', s, e, d, $9, $9"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],"
            " $7::timestamptz[], $8::int[]) AS u(t, i, c, k, p, s, e, d)",
            tenants,
            [r.entitlement_id for r in rows],
            customers,
            contents,
            [r.id for r in rows],
            [w[0] for w in windows],
            [w[1] for w in windows],
            [play_duration(r.access) for r in rows],
            now,
        )
        await notify(conn, [cache_key(r.tenant_id, r.customer_id, r.content_id) for r in rows])
        return [
            NewEvent(r.tenant_id, "PurchaseCompleted", "purchase", r.id, _completed(r, x, w, now))
            for r, x, w in zip(rows, transaction_ids, windows, strict=True)
        ]


def _completed(
    row: PurchaseRow, transaction_id: str, window: tuple[datetime, datetime | None], now: datetime
) -> dict[str, Any]:
    # Ids and amounts only: a customer's name or email never reaches an event.
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "content_id": row.content_id,
        "currency": row.currency,
        "price": row.price,
        "legs": list(row.legs),
        "transaction_id": transaction_id,
        "entitlement": {
            "id": row.entitlement_id,
            "starts_at": to_rfc3339(window[0]),
            "ends_at": to_rfc3339(window[1]) if window[1] else None,
        },
        "created_at": to_rfc3339(now),
    }


class RefundWriter:
    """Writes the refunds of a batch, updates their purchases, revokes fully refunded access."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[RefundRow, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        rows = [r for r, _ in applied]
        if not rows:
            return []
        transaction_ids = [_transaction_id(a) for _, a in applied]
        tenants, purchase_ids = _columns(rows, "tenant_id", "purchase_id")
        await conn.execute(
            "INSERT INTO refunds (tenant_id, id, purchase_id, seq, amount, refund_fee, reason, legs, transaction_id,"
            " created_at) SELECT t, i, p, s, a, f, r, l::jsonb, x, $10 FROM unnest($1::text[], $2::text[], $3::text[],"
            " $4::int[], $5::bigint[], $6::bool[], $7::text[], $8::text[], $9::text[]) AS u(t, i, p, s, a, f, r, l, x)",
            tenants,
            [r.id for r in rows],
            purchase_ids,
            *_columns(rows, "seq", "amount", "refund_fee", "reason"),
            [_json.encode(list(r.legs)).decode() for r in rows],
            transaction_ids,
            now,
        )
        # The unique refund number above already refused a stale computation; this applies the
        # new totals (the CHECK on purchases is the last line of defence against an excess).
        await conn.execute(
            "UPDATE purchases p SET refunded_amount = u.a, refunded_legs = u.l::jsonb, refund_count = u.s"
            " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[]) AS u(t, i, a, l, s)"
            " WHERE p.tenant_id = u.t AND p.id = u.i AND p.refund_count = u.s - 1",
            tenants,
            purchase_ids,
            [r.refunded_amount_after for r in rows],
            [_json.encode(list(r.refunded_legs_after)).decode() for r in rows],
            [r.seq for r in rows],
        )
        revoked = [r for r in rows if r.revokes]
        if revoked:
            await conn.execute(
                "UPDATE entitlements e SET status = 'revoked', updated_at = $3"
                " FROM unnest($1::text[], $2::text[]) AS u(t, p)"
                " WHERE e.tenant_id = u.t AND e.purchase_id = u.p AND e.status <> 'revoked'",
                [r.tenant_id for r in revoked],
                [r.purchase_id for r in revoked],
                now,
            )
            await notify(conn, [cache_key(r.tenant_id, r.customer_id, r.content_id) for r in revoked])
        return [
            NewEvent(r.tenant_id, "PurchaseRefunded", "purchase", r.purchase_id, _refunded(r, x, now))
            for r, x in zip(rows, transaction_ids, strict=True)
        ]


def _refunded(row: RefundRow, transaction_id: str, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "purchase_id": row.purchase_id,
        "customer_id": row.customer_id,
        "content_id": row.content_id,
        "amount": row.amount,
        "refund_fee": row.refund_fee,
        "reason": row.reason,
        "legs": list(row.legs),
        "refunded_amount": row.refunded_amount_after,
        "entitlement_revoked": row.revokes,
        "transaction_id": transaction_id,
        "created_at": to_rfc3339(now),
    }
