"""Product writes of pay-per-view: purchase and refund rows inside the ledger's transaction.

Each writer is called once per coalesced batch with the jobs whose postings were applied and
writes all their rows set-based (purchases: one statement for the purchase rows, entitlements,
notifications and `PurchaseCompleted` events of the whole batch), so a purchase row, its
entitlement and its event exist exactly when the wallet was charged.

Two rules are enforced by the database inside that same transaction, so concurrent requests
cannot break them whatever the interleaving:
- one active entitlement per customer and content (`entitlements_one_active`): the second of
  two concurrent purchases of the same content fails its product write, so its postings roll
  back with it and nothing is charged (the service answers `already_entitled`);
- refunds are numbered per purchase from the state they were computed on (`refunds_purchase_seq`):
  of two refunds computed from the same state only one commits; the service recomputes the
  other from the new state, so the sum of refunds never exceeds what any leg received.
Every write that changes an entitlement notifies `ENTITLEMENT_CHANNEL` (delivered at commit)
so other processes drop their cached checks; a purchase's notification carries its new
entitlement, which the other processes then serve without reading it back.

A purchase is priced from the catalogue cached in the API process; its write compares the
price, fee, split and access it copied with the content row in the same transaction and is
refused (`purchases_content_current`, migration 0061) when another process changed them since.
It is also refused (`purchases_access_open`, migration 0073) when its access window is over by
the batch's time, the time its entitlement's window is cut with: it would buy nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.events.outbox import OUTBOX_INSERT, NewEvent, outbox_json
from kassa.ledger import TransactionApplied
from kassa.payments.adapters.ppv_queries import access_json
from kassa.payments.domain.entitlements import Entitlement, access_ended, play_duration, window_for
from kassa.payments.errors import AlreadyEntitled
from kassa.shared.clock import to_rfc3339
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg

    from kassa.ledger import Applied
    from kassa.payments.domain.content import Access
    from kassa.store.pool import Conn

ENTITLEMENT_CHANNEL = "kassa_entitlements"
# The check_violation of a purchase whose access window ended by its batch's time (0073).
ACCESS_ENDED = "purchases_access_open"
_json = msgspec.json.Encoder()


def cache_key(tenant_id: str, customer_id: str, content_id: str) -> str:
    return f"{tenant_id}|{customer_id}|{content_id}"


def already_entitled(exc: asyncpg.UniqueViolationError, row: PurchaseRow) -> AlreadyEntitled:
    """The error for a write of `row` that the database refused with `exc`: `entitlements_one_active`
    means the customer already has access (a concurrent purchase won); any other violation is
    not ours to explain and is raised as it is."""
    if exc.constraint_name != "entitlements_one_active":
        raise exc
    return AlreadyEntitled(f"customer '{row.customer_id}' already has access to content '{row.content_id}'")


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
    # The content's split as priced ([{customer_id, share_bps}]), checked against the current row.
    rights_holders: tuple[dict[str, Any], ...]
    # The customer was seen with an entitlement marked active (its window may have ended).
    expire: bool = False
    # Priced from the catalogue just now, so checked against the content row; False for a held
    # purchase released by a review, whose price was fixed when it was held.
    priced_now: bool = True


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


# The price versions of a batch ($4: each distinct content, currency, price, fee, split, legs
# and access its purchases were priced from, usually one for a whole live-event batch) carry
# the JSON documents, so they are parsed once per version and not once per purchase; the
# purchases ($1) name their version by `q`.
_PURCHASE_WRITE = (
    """
WITH v AS MATERIALIZED (
    SELECT * FROM json_to_recordset($4::json) AS v(q int, t text, k text, cur text, p bigint, fb int, fm bigint,
                                                    l jsonb, r jsonb, rh jsonb, ac jsonb, chk boolean)
), fresh AS MATERIALIZED (
    -- Each version as the content is now, or refused (the function raises): see 0061.
    SELECT v.q, v.t, v.k, v.cur, v.p, v.fb, v.fm, v.l, v.r FROM v JOIN content c ON c.tenant_id = v.t AND c.id = v.k
    WHERE CASE WHEN NOT v.chk OR (c.prices -> v.cur = to_jsonb(v.p) AND c.platform_fee_bps = v.fb
                                  AND c.platform_fee_min = v.fm AND c.rights_holders = v.rh AND c.access = v.ac)
               THEN true ELSE kassa_ppv_content_changed(v.k) END
), priced AS MATERIALIZED (
    SELECT f.t, x.i, x.c, f.k, f.cur, f.p, f.fb, f.fm, x.w, f.l, x.tx, f.r, x.e, x.s, x.en, x.d, x.n
    FROM json_to_recordset($1::json) AS x(q int, i text, c text, w text, tx text, e text, s timestamptz,
                                          en timestamptz, d int, n text)
    JOIN fresh f ON f.q = x.q
), purchased AS (
    INSERT INTO purchases (tenant_id, id, customer_id, content_id, currency, price, platform_fee_bps,
                           platform_fee_min, wallet_account_id, legs, transaction_id, refunded_legs, created_at)
    SELECT t, i, c, k, cur, p, fb, fm, w, l, tx, r, $3 FROM priced
    RETURNING 1
), entitled AS (
    INSERT INTO entitlements (tenant_id, id, customer_id, content_id, purchase_id, status, starts_at, ends_at,
                              play_duration_s, created_at, updated_at)
    SELECT t, e, c, k, i, 'active', s, en, d, $3, $3 FROM priced
    RETURNING 1
), notified AS (
    SELECT pg_notify('"""
    + ENTITLEMENT_CHANNEL
    + """', n) FROM priced
), events AS ("""
    + OUTBOX_INSERT.replace("$OUTBOX", "$2")
    + """ RETURNING 1)
SELECT (SELECT count(*) FROM priced) AS priced, (SELECT count(*) FROM purchased) AS purchases,
       (SELECT count(*) FROM entitled) AS entitlements, (SELECT count(*) FROM notified) AS notified,
       (SELECT count(*) FROM events) AS events"""
)


def _versions(rows: Sequence[PurchaseRow]) -> tuple[list[int], list[dict[str, Any]]]:
    """Each row's price version (an index into the second list) and the distinct versions."""
    index: dict[bytes, int] = {}
    versions: list[dict[str, Any]] = []
    of_rows = []
    for r in rows:
        version = {
            "t": r.tenant_id,
            "k": r.content_id,
            "cur": r.currency,
            "p": r.price,
            "fb": r.platform_fee_bps,
            "fm": r.platform_fee_min,
            "l": r.legs,
            "r": [0] * len(r.legs),
            "rh": r.rights_holders,
            "ac": access_json(r.access),
            "chk": r.priced_now,
        }
        key = _json.encode(version)
        q = index.get(key)
        if q is None:
            q = index[key] = len(versions)
            versions.append({"q": q, **version})
        of_rows.append(q)
    return of_rows, versions


def purchase_entitlement(row: PurchaseRow, now: datetime) -> Entitlement:
    """The entitlement a purchase committed at `now` (its batch's database time) writes, exactly
    as a read of it returns it: the writer inserts it, the service caches it."""
    starts_at, ends_at = window_for(row.access, now)
    return Entitlement(
        row.tenant_id,
        row.entitlement_id,
        row.customer_id,
        row.content_id,
        row.id,
        "active",
        starts_at.astimezone(UTC),
        ends_at.astimezone(UTC) if ends_at else None,
        None,
        play_duration(row.access),
    )


@dataclass(frozen=True, slots=True)
class _Notice:
    k: str  # the cache key
    e: Entitlement  # its deciding row after the write


_notice = msgspec.json.Decoder(_Notice)


def entitlement_notice(entitlement: Entitlement) -> str:
    """A NOTIFY payload carrying the key's new deciding row. A plain key (what the other
    writes send) only invalidates; keys never contain '{' (ids are [A-Za-z0-9_.:-])."""
    key = cache_key(entitlement.tenant_id, entitlement.customer_id, entitlement.content_id)
    return _json.encode(_Notice(key, entitlement)).decode()


def read_notice(payload: str) -> tuple[str, Entitlement | None]:
    """(key, its new deciding row or None: read it again). Raises msgspec.DecodeError."""
    if not payload.startswith("{"):
        return payload, None
    notice = _notice.decode(payload)
    return notice.k, notice.e


class PurchaseWriter:
    """Writes the purchases of a batch, their entitlements and their events in one statement.

    Before it, and only for purchases whose customer was seen holding an entitlement marked
    active (`PurchaseRow.expire`), an entitlement whose window has ended is marked expired, so
    the one-active rule counts only entitlements that still give access. A purchase prepared
    from a stale view that missed such a row fails on that rule, nothing is charged, and the
    service prepares it again from the database (`PayPerView.buy`)."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[PurchaseRow, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        rows = [p for p, _ in applied]
        if not rows:
            return []
        expiring = [r for r in rows if r.expire]
        if expiring:
            tenants, customers, contents = _columns(expiring, "tenant_id", "customer_id", "content_id")
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
        entitlements = [purchase_entitlement(r, now) for r in rows]
        of_rows, versions = _versions(rows)
        records = [
            {"q": q, "i": r.id, "c": r.customer_id, "w": r.wallet_account_id, "tx": x, "e": r.entitlement_id}
            | {"s": e.starts_at, "en": e.ends_at, "d": e.play_duration_s, "n": entitlement_notice(e)}
            for r, q, x, e in zip(rows, of_rows, transaction_ids, entitlements, strict=True)
        ]
        events = [
            NewEvent(r.tenant_id, "PurchaseCompleted", "purchase", r.id, _completed(r, x, e, now))
            for r, x, e in zip(rows, transaction_ids, entitlements, strict=True)
        ]
        counts = await conn.fetchrow(
            _PURCHASE_WRITE,
            _json.encode(records).decode(),
            outbox_json(events, now).decode(),
            now,
            _json.encode(versions).decode(),
        )
        ended = [r.content_id for r in rows if r.priced_now and access_ended(r.access, now)]
        if ended:
            # Priced before the window's end, written after it (by the batch's database time,
            # the entitlement's clock): it would buy nothing. Refused in the ledger's
            # transaction, so nothing is charged (migration 0073). After the write, so that a
            # purchase priced from a stale content is priced again (0061) rather than refused on
            # the old window. A held purchase released by a review was priced when it was held.
            await conn.execute("SELECT kassa_ppv_access_ended($1)", ended[0])
        invariant(
            counts is not None and all(n == len(rows) for n in counts.values()),
            "every purchase of the batch wrote its row, entitlement, notification and event",
        )
        return []


def _completed(row: PurchaseRow, transaction_id: str, entitlement: Entitlement, now: datetime) -> dict[str, Any]:
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
            "starts_at": to_rfc3339(entitlement.starts_at),
            "ends_at": to_rfc3339(entitlement.ends_at) if entitlement.ends_at else None,
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
