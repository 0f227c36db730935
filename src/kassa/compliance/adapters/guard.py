"""The compliance step of a money movement, run inside the ledger's coalesced transaction.

A guarded payment is a ledger job whose `ProductWrite` is `GUARD` with a `Guarded` payload:
the usage increments its limits allow (domain/limits.py), the review row to open when the
monitoring rules hold it, and the product write of the payment's own product (if any), which
runs after the guard in the same transaction. The ledger calls the guard once per batch, after
the postings were applied, so:

- Limits are enforced atomically with the money. The guard adds the batch's payments to the
  customers' day and month counter rows with one conditional upsert; a row that would pass its
  maximum is not updated, and the guard then calls `kassa_limit_exceeded(name)` (migration
  0045), a check_violation. The ledger batcher rolls the batch back and retries its jobs one by
  one; each then commits alone or fails alone with that error, which the service turns into
  422 `limit_exceeded` naming the limit. Two concurrent payments in different batches (or API
  processes) serialize on the counter row's lock, and the second sees the first's usage.
- A held payment's review row exists exactly when its pending transaction does.
- A review decision (`Decided`) marks the review in the same transaction as the post or void.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.ledger import ProductWrite, TransactionApplied
from kassa.ledger.products import run_product_writes
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.compliance.domain.limits import UsageIncrement
    from kassa.events.outbox import NewEvent
    from kassa.ledger import Applied
    from kassa.store.pool import Conn

LIMIT_CONSTRAINT_PREFIX = "kassa_limit:"
_KEY_COLUMNS = "tenant_id, customer_id, direction, currency, period, period_start"


@dataclass(frozen=True, slots=True)
class Hold:
    """The review row a held payment opens."""

    review_id: str
    customer_id: str
    direction: str
    amount: int
    currency: str
    rule_version: int
    rule_ids: tuple[str, ...]
    product: str | None = None
    product_id: str | None = None


@dataclass(frozen=True, slots=True)
class Guarded:
    increments: tuple[UsageIncrement, ...]
    hold: Hold | None = None
    inner: ProductWrite[Any] | None = None


@dataclass(frozen=True, slots=True)
class Decided:
    tenant_id: str
    review_id: str
    status: str  # approved | rejected
    reviewer: str
    reason: str
    inner: ProductWrite[Any] | None = None  # the held product's completion or failure


def limit_name(exc: BaseException) -> str | None:
    """The limit named by `kassa_limit_exceeded`, or None for any other error."""
    name = getattr(exc, "constraint_name", None)
    if isinstance(exc, asyncpg.CheckViolationError) and name and name.startswith(LIMIT_CONSTRAINT_PREFIX):
        return str(name[len(LIMIT_CONSTRAINT_PREFIX) :])
    return None


class Guard:
    """The ProductWriter of guarded payments (one instance, `GUARD`)."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Guarded, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        await _use_limits(conn, [i for payload, _ in applied for i in payload.increments])
        holds = [(p.hold, a) for p, a in applied if p.hold is not None]
        if holds:
            await _open_reviews(conn, holds, now)
        inner = [(p.inner, a) for p, a in applied if p.inner is not None]
        return await run_product_writes(conn, inner, now) if inner else []


class Decisions:
    """The ProductWriter of review decisions: the review is decided with its post or void."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Decided, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        for decided, _ in applied:
            done = await mark_decided(conn, decided, now)
            # The ledger post or void succeeded, so the transaction was pending: its review is open.
            invariant(done, "a pending held transaction has an open review")
        inner = [(d.inner, a) for d, a in applied if d.inner is not None]
        return await run_product_writes(conn, inner, now) if inner else []


async def mark_decided(conn: Conn, decided: Decided, now: datetime) -> bool:
    """Mark an open review decided; False if it was not open. For a product whose decision moves
    no money at once (a top-up approved before the provider charged the card), called in the
    product's own transaction instead of through the ledger."""
    done = await conn.fetchval(
        "UPDATE compliance_reviews SET status = $3, reviewer = $4, reason = $5, decided_at = $6"
        " WHERE tenant_id = $1 AND id = $2 AND status = 'open' RETURNING id",
        decided.tenant_id,
        decided.review_id,
        decided.status,
        decided.reviewer,
        decided.reason,
        now,
    )
    return done is not None


GUARD = Guard()
DECISIONS = Decisions()


async def _use_limits(conn: Conn, increments: list[UsageIncrement]) -> None:
    totals: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, "", ""])
    for inc in increments:
        key = (inc.tenant_id, inc.customer_id, inc.direction, inc.currency, inc.window, inc.period_start)
        total = totals[key]
        total[0] += inc.amount
        total[1] += 1
        total[2:] = [inc.amount_max, inc.count_max, inc.amount_limit, inc.count_limit]
    if not totals:
        return
    for amount, count, amount_max, count_max, amount_limit, count_limit in totals.values():
        # Several payments of one customer in one batch that together pass a maximum: refuse
        # the batch; one by one, each fits or fails on its own.
        if amount > amount_max or count > count_max:
            await conn.execute("SELECT kassa_limit_exceeded($1)", amount_limit if amount > amount_max else count_limit)
    keys = list(totals)
    columns = [[k[i] for k in keys] for i in range(6)] + [[totals[k][i] for k in keys] for i in range(4)]
    updated = await conn.fetch(
        f"INSERT INTO compliance_limit_usage AS u ({_KEY_COLUMNS}, amount_used, count_used, amount_max, count_max)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[],"
        " $7::bigint[], $8::integer[], $9::bigint[], $10::integer[])"
        f" ON CONFLICT ({_KEY_COLUMNS}) DO UPDATE SET amount_used = u.amount_used + excluded.amount_used,"
        " count_used = u.count_used + excluded.count_used, amount_max = excluded.amount_max,"
        " count_max = excluded.count_max"
        " WHERE u.amount_used + excluded.amount_used <= excluded.amount_max"
        " AND u.count_used + excluded.count_used <= excluded.count_max"
        f" RETURNING {_KEY_COLUMNS}",
        *columns,
    )
    if len(updated) == len(keys):
        return
    done = {tuple(row) for row in updated}
    for key in keys:
        if key not in done:
            row = await conn.fetchrow(
                "SELECT amount_used FROM compliance_limit_usage WHERE (tenant_id, customer_id, direction,"
                " currency, period, period_start) = ($1, $2, $3, $4, $5, $6)",
                *key,
            )
            amount, _, amount_max, _, amount_limit, count_limit = totals[key]
            over_amount = row is not None and row["amount_used"] + amount > amount_max
            await conn.execute("SELECT kassa_limit_exceeded($1)", amount_limit if over_amount else count_limit)


async def _open_reviews(conn: Conn, holds: list[tuple[Hold, Applied | TransactionApplied]], now: datetime) -> None:
    rows = [(a.transaction.tenant_id, h, a.transaction.id) for h, a in holds if isinstance(a, TransactionApplied)]
    invariant(len(rows) == len(holds), "a held payment is a pending transaction")
    await conn.executemany(
        "INSERT INTO compliance_reviews (tenant_id, id, transaction_id, customer_id, direction, amount,"
        " currency, rule_version, rule_ids, created_at, product, product_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            (
                *(t, h.review_id, x, h.customer_id, h.direction, h.amount, h.currency, h.rule_version),
                *(list(h.rule_ids), now, h.product, h.product_id),
            )
            for t, h, x in rows
        ],
    )
