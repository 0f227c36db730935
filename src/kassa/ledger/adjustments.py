"""Manual ledger adjustments: an operator's multi-leg transaction, audited with the money it moves.

An adjustment is an ordinary posted `CreateTransaction` whose metadata carries the marker
`ADJUSTMENT_MARKER` (so it is recognisable in any transaction history) and whose `ProductWrite`
is `ADJUSTMENTS`: after the postings, in the same coalesced database transaction, the writer
appends the `ledger.adjusted` audit record (actor key, request id, reason, and every touched
account's balances before and after). So the record exists exactly when the money moved: a
refused adjustment (insufficient funds, ...) writes none, and a replay (Idempotency-Key or an
identical retry by id) is never handed to the writer, so it writes no second one.

Before and after come from the journal: every entry carries its account's counters after it,
so an account's first entry of this transaction minus its own change is the balance before,
and its last entry the balance after, exact even when other jobs of the same batch move the
same account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kassa.identity.audit import record_audit
from kassa.ledger.domain.model import Balance
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from kassa.events.outbox import NewEvent
    from kassa.ledger.domain.model import NormalBalance, Transaction
    from kassa.ledger.domain.posting import Applied
    from kassa.ledger.domain.transactions import TransactionApplied
    from kassa.store.pool import Conn

ADJUSTMENT_MARKER: Final = "kassa_adjustment"  # metadata key, value true, on an adjustment's transaction
AUDIT_ACTION: Final = "ledger.adjusted"


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Who adjusts and why. The request id is taken here because the writer runs in the
    batcher's task, outside the request's context."""

    tenant_id: str
    actor_key_id: str | None
    request_id: str | None
    reason: str


def is_adjustment(metadata: Mapping[str, Any]) -> bool:
    return metadata.get(ADJUSTMENT_MARKER) is True


def shown(balance: Balance, normal: NormalBalance, currency: str) -> dict[str, Any]:
    """An account's balances as the API shows them (`balances` of GET /v1/accounts/{id})."""
    return {
        "currency": currency,
        "posted": balance.posted(normal),
        "pending_debits": balance.debits_pending,
        "pending_credits": balance.credits_pending,
        "available": balance.available(normal),
    }


def before_and_after(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each account's balances before its first and after its last entry of `rows` (one
    transaction's entries in journal order). Pure."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for row in rows:
        counters = Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])
        account, normal, currency = row["account_id"], row["normal_balance"], row["currency"]
        if account not in before:
            prior = counters.copy()
            if row["side"] == "debit":
                prior.debits_posted -= row["posted_amount"]
                prior.debits_pending -= row["pending_amount"]
            else:
                prior.credits_posted -= row["posted_amount"]
                prior.credits_pending -= row["pending_amount"]
            before[account] = shown(prior, normal, currency)
        after[account] = shown(counters, normal, currency)
    return before, after


def postings_data(transaction: Transaction) -> list[dict[str, Any]]:
    return [
        {
            "index": p.index,
            "debit_account_id": p.debit_account_id,
            "credit_account_id": p.credit_account_id,
            "amount": p.amount,
            "currency": p.currency,
        }
        for p in transaction.postings
    ]


class AdjustmentWriter:
    """The ProductWriter of adjustments (one instance, `ADJUSTMENTS`). One journal read and one
    audit insert per adjustment: adjustments are rare operator actions, not a hot path."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Adjustment, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        for adjustment, result in applied:
            transaction = getattr(result, "transaction", None)
            invariant(transaction is not None, "an adjustment is a multi-leg transaction")
            assert transaction is not None  # for mypy; the invariant says why
            accounts = sorted({a for p in transaction.postings for a in (p.debit_account_id, p.credit_account_id)})
            # created_at = now narrows the read to this batch's entries (index entries_as_of).
            rows = await conn.fetch(
                """SELECT e.account_id, e.side, e.posted_amount, e.pending_amount, e.debits_posted, e.credits_posted,
                          e.debits_pending, e.credits_pending, a.normal_balance, a.currency
                   FROM entries e JOIN accounts a ON a.tenant_id = e.tenant_id AND a.id = e.account_id
                   WHERE e.tenant_id = $1 AND e.account_id = ANY($2::text[]) AND e.created_at = $3
                     AND e.transaction_id = $4
                   ORDER BY e.seq""",
                adjustment.tenant_id,
                accounts,
                now,
                transaction.id,
            )
            before, after = before_and_after(rows)
            invariant(sorted(after) == accounts, "every account an adjustment touched has its entries")
            await record_audit(
                conn,
                tenant_id=adjustment.tenant_id,
                actor_key_id=adjustment.actor_key_id,
                action=AUDIT_ACTION,
                target_type="transaction",
                target_id=transaction.id,
                before={"balances": before},
                after={
                    "balances": after,
                    "postings": postings_data(transaction),
                    "reason": adjustment.reason,
                    "reference": transaction.reference,
                },
                request_id=adjustment.request_id,
            )
        return []


ADJUSTMENTS: Final = AdjustmentWriter()

__all__ = ["ADJUSTMENTS", "ADJUSTMENT_MARKER", "AUDIT_ACTION", "Adjustment", "AdjustmentWriter", "is_adjustment"]
