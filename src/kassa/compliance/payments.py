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
transaction as the post or void. A review that names its product (a top-up, withdrawal or
purchase: `Payment.product_ref`) is decided by that product's `HeldProduct`, which completes
or fails the product together with the review (docs/compliance.md, "Payments held for
review"). Usage counted for a held payment stays counted when it is rejected: the limits err
on the side of the customer having moved the money.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import asyncpg

from kassa.compliance.adapters import rows
from kassa.compliance.adapters.guard import DECISIONS, GUARD, Decided, Guarded, Hold, limit_name
from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.limits import DEFAULT_LIMIT_SET, Direction, LimitSet, check_payment, period_start
from kassa.compliance.domain.rules import Decision, Facts, RuleSet, evaluate
from kassa.compliance.errors import (
    BlockedByPolicy,
    CapabilityDisabled,
    LimitExceeded,
    ReviewDecided,
    ReviewNotFound,
)
from kassa.ledger import PostTransaction, ProductWrite, TransactionApplied, TransactionNotPending, VoidTransaction
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import review_hold_timeout_s
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from kassa.compliance.domain.kyc import Capability, CapabilityState
    from kassa.compliance.domain.model import Review, Standing
    from kassa.ledger import CreateTransaction, LedgerService
    from kassa.store.pool import Conn, Pool


# The owner (`kassa.ledger.PRODUCT_KEY`) of a plain payment held for review: no product decides
# it, so only the review's decision (`decide`) may post or void the held transaction.
REVIEW_OWNER: Final = "compliance"


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
    capability: Capability | None = None  # the customer's capability this payment needs
    product_ref: tuple[str, str] | None = None  # (kind, id) of the product a review would hold


class HeldProduct(Protocol):
    """A product whose payments can be held for review decides what approval and rejection do
    to it. It marks the review decided (`decided`, through the ledger job carrying
    `ProductWrite(DECISIONS, decided)` or `guard.mark_decided` in its own transaction) together
    with the product's change. Raises ReviewDecided (decided concurrently), TransactionNotPending
    (the hold ended: expired or failed at the provider), and the product's own errors."""

    async def decide(self, review: Review, decided: Decided) -> None: ...


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
    payment: Payment

    @property
    def hold(self) -> Hold | None:
        """The review a `review` decision opens (None otherwise)."""
        return self.write.payload.hold


# standing, rules, payments today, screened, the tenant's limits
PaymentFacts = tuple["Standing | None", RuleSet, int, bool, LimitSet]


async def read_facts(pool: Pool, payment: Payment, now: datetime) -> PaymentFacts:
    """(standing, rule set, payments today, screened) in one tenant transaction."""
    tenant_id = payment.command.tenant_id
    async with tenant_transaction(pool, tenant_id) as conn:
        return await facts_in(conn, tenant_id, payment.customer_id, payment.direction, payment.currency, now)


async def facts_in(
    conn: Conn, tenant_id: str, customer_id: str, direction: Direction, currency: str, now: datetime
) -> PaymentFacts:
    """The same, in the caller's tenant transaction (a product's own read, saving one)."""
    day = period_start("day", now)
    return await rows.payment_facts(conn, tenant_id, customer_id, direction, currency, day)


async def facts_many_in(
    conn: Conn, tenant_id: str, customer_ids: list[str], direction: Direction, currency: str, now: datetime
) -> dict[str, PaymentFacts]:
    """`facts_in` of several customers of one tenant in one statement, by customer id."""
    day = period_start("day", now)
    return await rows.payment_facts_many(conn, tenant_id, customer_ids, direction, currency, day)


def check_facts(
    payment: Payment,
    standing: Standing | None,
    rules: RuleSet,
    today: int,
    now: datetime,
    limits: LimitSet = DEFAULT_LIMIT_SET,
) -> Checked:
    """The capability, per-transaction limits and the monitoring rules for a payment. Raises
    CapabilityDisabled, LimitExceeded and BlockedByPolicy. A `review` decision carries the Hold
    its ledger job opens: a product hands `write` to `ledger.execute` (with the command made
    pending when it was not, see `held_command`) and `limit_error` in its error handling; `pay`
    does all of it for a plain payment."""
    tenant_id = payment.command.tenant_id
    invariant(payment.amount > 0, "guarded payments are positive")
    kyc = standing.kyc if standing is not None else Kyc()
    # A blocked customer has every capability disabled, but the rules speak first so that the
    # refusal records the rule (and its version) that blocks it.
    state = kyc.capability(payment.capability) if payment.capability is not None else None
    if state is not None and state.status != "enabled" and not kyc.blocked:
        raise _disabled(state)
    increments = check_payment(
        tenant_id, payment.customer_id, kyc.tier, payment.direction, payment.currency, payment.amount, now, limits.table
    )
    decision = evaluate(rules, _facts(payment, standing, today, now))
    if decision.action == "block":
        raise BlockedByPolicy(
            f"blocked by rule(s) {', '.join(decision.rule_ids)}",
            rule_ids=list(decision.rule_ids),
            rule_version=decision.version,
        )
    if state is not None and state.status != "enabled":
        raise _disabled(state)
    hold = None
    if decision.action == "review":
        kind, product_id = payment.product_ref or (None, None)
        hold = Hold(
            "rev_" + new_id().replace("-", ""),
            payment.customer_id,
            payment.direction,
            payment.amount,
            payment.currency,
            decision.version,
            decision.rule_ids,
            kind,
            product_id,
        )
    return Checked(ProductWrite(GUARD, Guarded(tuple(increments), hold, payment.product)), decision, payment)


def _disabled(state: CapabilityState) -> CapabilityDisabled:
    return CapabilityDisabled(
        f"the customer's {state.capability} capability is {state.status} ({state.reason})",
        capability=state.capability,
        capability_status=state.status,
        reason=state.reason,
    )


def held_command(checked: Checked) -> CreateTransaction:
    """The payment's command, pending for the review's time when a review holds an immediate one."""
    command = checked.payment.command
    if checked.hold is None or command.pending:
        return command
    # A product's payment is its product's (it decides the review); a plain one is the review's.
    invariant(
        (checked.payment.product_ref is None) == (command.owner is None),
        "a payment whose product decides its review is that product's transaction",
    )
    owner = REVIEW_OWNER if command.owner is None else command.owner
    return replace(command, pending=True, timeout_s=review_hold_timeout_s, owner=owner)


def with_product(checked: Checked, product: ProductWrite[Any] | None) -> ProductWrite[Guarded]:
    """The guard's write carrying another product write (a held product writes other rows)."""
    guarded = checked.write.payload  # built directly: dataclasses.replace costs more than the checks
    return ProductWrite(GUARD, Guarded(guarded.increments, guarded.hold, product))


def limit_error(exc: asyncpg.CheckViolationError) -> LimitExceeded | None:
    """The 422 for the guard's in-transaction refusal, or None for another constraint."""
    name = limit_name(exc)
    return None if name is None else LimitExceeded(f"the payment would exceed {name}", limit=name)


async def pay(ledger: LedgerService, checked: Checked) -> Moved:
    """Move (or hold, on a review) the money of a checked payment. Raises LimitExceeded and every
    error of `kassa.ledger.execute` (InsufficientFunds, ...)."""
    invariant(not checked.payment.command.pending, "pay() moves money at once or holds it for review itself")
    hold = checked.hold
    try:
        applied = await ledger.execute(held_command(checked), product=checked.write)
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
    products: Mapping[str, HeldProduct],
) -> Review:
    """Approve (post) or reject (void) a held payment, or let its product decide (`products`).
    Raises ReviewNotFound, ReviewDecided, the ledger's TransactionNotPending when the hold
    ended before the decision, and the product's errors."""
    async with tenant_transaction(pool, tenant_id) as conn:
        found = await rows.review(conn, tenant_id, review_id)
    if found is None:
        raise ReviewNotFound(f"no review {review_id}")
    if found.status != "open":
        raise ReviewDecided(f"review {review_id} is {found.status} already", review_status=found.status)
    status = "approved" if approve else "rejected"
    # Used only for a plain payment (no product to decide it), which belongs to its review.
    command = (
        PostTransaction(tenant_id, found.transaction_id, owner=REVIEW_OWNER)
        if approve
        else VoidTransaction(tenant_id, found.transaction_id, owner=REVIEW_OWNER)
    )
    decided = Decided(tenant_id, review_id, status, reviewer, reason)
    product = products.get(found.product) if found.product else None
    invariant(found.product is None or product is not None, "every held product kind has its decider")
    try:
        if product is not None:
            await product.decide(found, decided)
        else:
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
