"""Guarded money movements: limits and monitoring rules applied to a payment, and reviews.

`ComplianceService.pay` (service.py) is what a payment product calls instead of the ledger:

1. Per-transaction limits of the customer's tier (domain/limits.py): 422 `limit_exceeded`.
2. The tenant's monitoring rules (domain/rules.py) on the payment's facts:
   `block` is 422 `blocked_by_policy`; `review` turns the transaction into a pending one (the
   money is held) and opens a review in the same database transaction; `allow` moves it.
3. The ledger job carries the guard (adapters/guard.py): day and month usage is added in the
   ledger's coalesced transaction, so the money moves exactly when it fits the limits.

A reviewer's approval posts the held transaction, a rejection voids it; either marks the review
decided (reviewer, reason; the rule version is the one recorded when it was held) in the same
transaction as the post or void. Usage counted for a held payment stays counted when it is
rejected: the limits err on the side of the customer having moved the money.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import asyncpg

from kassa.compliance.adapters import rows
from kassa.compliance.adapters.guard import DECISIONS, GUARD, Decided, Guarded, Hold, limit_name
from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.limits import Direction, check_payment, period_start
from kassa.compliance.domain.rules import Decision, Facts, evaluate
from kassa.compliance.errors import BlockedByPolicy, LimitExceeded, ReviewDecided, ReviewNotFound
from kassa.ledger import PostTransaction, ProductWrite, TransactionApplied, TransactionNotPending, VoidTransaction
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import review_hold_timeout_s
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.compliance.domain.model import Review, Standing
    from kassa.ledger import CreateTransaction, LedgerService
    from kassa.store.pool import Conn, Pool


class Audit(Protocol):
    """Records a privileged action in the caller's transaction (identity's `record_audit`)."""

    async def __call__(
        self,
        conn: Conn,
        *,
        tenant_id: str,
        actor_key_id: str | None,
        action: str,
        target_type: str,
        target_id: str,
        before: Any = None,
        after: Any = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Payment:
    """A money movement of one customer: `amount` in `currency` leaves (`outgoing`) or reaches
    (`incoming`) the customer through the transaction `command`."""

    customer_id: str
    direction: Direction
    amount: int
    currency: str
    command: CreateTransaction
    product: ProductWrite[Any] | None = None


@dataclass(frozen=True, slots=True)
class Moved:
    outcome: Literal["posted", "held"]
    transaction: TransactionApplied
    review_id: str | None


@dataclass(frozen=True, slots=True)
class Checked:
    """A payment that passed the checks before the ledger: the guard its job must carry (limits
    are enforced again, atomically, inside the ledger's transaction) and the rules' decision."""

    write: ProductWrite[Guarded]
    decision: Decision


async def check(pool: Pool, payment: Payment, now: datetime, hold: Hold | None = None) -> Checked:
    """Per-transaction limits and the monitoring rules for a payment. Raises LimitExceeded and
    BlockedByPolicy. A product whose own flow is already pending (a top-up waiting for its
    provider) calls this and hands `write` to `ledger.execute`, and `limit_error` in its error
    handling; `pay` does both for an immediate payment and holds it on a `review`."""
    tenant_id = payment.command.tenant_id
    invariant(payment.amount > 0, "guarded payments are positive")
    async with tenant_transaction(pool, tenant_id) as conn:
        standing = await rows.standing(conn, tenant_id, payment.customer_id)
        rules = await rows.rule_set(conn, tenant_id)
        today = await rows.day_count(
            conn, tenant_id, payment.customer_id, payment.direction, payment.currency, period_start("day", now)
        )
    kyc = standing.kyc if standing is not None else Kyc()
    increments = check_payment(
        tenant_id, payment.customer_id, kyc.tier, payment.direction, payment.currency, payment.amount, now
    )
    decision = evaluate(rules, _facts(payment, standing, today, now))
    if decision.action == "block":
        raise BlockedByPolicy(
            f"blocked by rule(s) {', '.join(decision.rule_ids)}",
            rule_ids=list(decision.rule_ids),
            rule_version=decision.version,
        )
    return Checked(ProductWrite(GUARD, Guarded(tuple(increments), hold, payment.product)), decision)


def limit_error(exc: asyncpg.CheckViolationError) -> LimitExceeded | None:
    """The 422 for the guard's in-transaction refusal, or None for another constraint."""
    name = limit_name(exc)
    return None if name is None else LimitExceeded(f"the payment would exceed {name}", limit=name)


async def pay(pool: Pool, ledger: LedgerService, payment: Payment, now: datetime) -> Moved:
    """Apply limits and rules, then move (or hold) the money. Raises LimitExceeded,
    BlockedByPolicy and every error of `kassa.ledger.execute` (InsufficientFunds, ...)."""
    invariant(not payment.command.pending, "pay() moves money at once or holds it for review itself")
    checked = await check(pool, payment, now)
    command, write, decision = payment.command, checked.write, checked.decision
    hold = None
    if decision.action == "review":
        hold = Hold(
            "rev_" + new_id().replace("-", ""),
            payment.customer_id,
            payment.direction,
            payment.amount,
            payment.currency,
            decision.version,
            decision.rule_ids,
        )
        command = replace(command, pending=True, timeout_s=review_hold_timeout_s)
        write = ProductWrite(GUARD, replace(write.payload, hold=hold))
    try:
        applied = await ledger.execute(command, product=write)
    except asyncpg.CheckViolationError as exc:
        refused = limit_error(exc)
        if refused is None:
            raise
        raise refused from None
    invariant(isinstance(applied, TransactionApplied), "a guarded payment is a ledger transaction")
    assert isinstance(applied, TransactionApplied)  # for mypy: invariant() does not narrow
    return Moved("held" if hold else "posted", applied, hold.review_id if hold else None)


def _facts(payment: Payment, standing: Standing | None, today: int, now: datetime) -> Facts:
    since = standing.customer_since if standing is not None else now
    return Facts(
        amount=payment.amount,
        currency=payment.currency,
        direction=payment.direction,
        country=standing.country if standing is not None else None,
        account_age_s=max(0, int((now - since).total_seconds())),
        recent_count=today,
        blocked=standing is not None and standing.kyc.blocked,
    )


async def decide(
    pool: Pool,
    ledger: LedgerService,
    audit: Audit | None,
    tenant_id: str,
    review_id: str,
    approve: bool,
    reviewer: str,
    reason: str,
) -> Review:
    """Approve (post) or reject (void) a held payment. Raises ReviewNotFound, ReviewDecided and
    the ledger's TransactionNotPending when the hold expired before the decision."""
    async with tenant_transaction(pool, tenant_id) as conn:
        found = await rows.review(conn, tenant_id, review_id)
    if found is None:
        raise ReviewNotFound(f"no review {review_id}")
    if found.status != "open":
        raise ReviewDecided(f"review {review_id} is {found.status} already", review_status=found.status)
    status = "approved" if approve else "rejected"
    command = (
        PostTransaction(tenant_id, found.transaction_id)
        if approve
        else VoidTransaction(tenant_id, found.transaction_id)
    )
    decided = Decided(tenant_id, review_id, status, reviewer, reason)
    try:
        await ledger.execute(command, product=ProductWrite(DECISIONS, decided))
    except TransactionNotPending:
        # A concurrent decision won (its post or void committed first), or the hold expired.
        async with tenant_transaction(pool, tenant_id) as conn:
            now_found = await rows.review(conn, tenant_id, review_id)
        if now_found is not None and now_found.status != "open":
            raise ReviewDecided(
                f"review {review_id} is {now_found.status} already", review_status=now_found.status
            ) from None
        raise
    async with tenant_transaction(pool, tenant_id) as conn:
        after = await rows.review(conn, tenant_id, review_id)
        invariant(after is not None and after.status == status, "the decision committed with its ledger change")
        assert after is not None
        if audit is not None:
            await audit(
                conn,
                tenant_id=tenant_id,
                actor_key_id=reviewer,
                action="review.decided",
                target_type="review",
                target_id=review_id,
                before={"status": "open"},
                after={"status": status, "reason": reason, "rule_version": after.rule_version},
            )
    return after
