"""The compliance step of top-ups and withdrawals, and what a review decision does to them.

Every top-up (`incoming`, capability `wallet.topup`) and withdrawal (`outgoing`, capability
`withdrawals`) goes through `ComplianceService.check` before its pending ledger transaction is
written, and its ledger job carries the compliance guard, so the day and month limits are used
in the same database transaction that holds the money (kassa.compliance.adapters.guard).
Refusals (`capability_disabled`, `limit_exceeded`, `blocked_by_policy`: 422) change nothing.

A `review` decision holds the product (docs/compliance.md, "Payments held for review"):

Top-up (the card is charged at once: its number is never kept, so it cannot be charged later):
    pending, review open ── provider success ──▶ pending, charged (the wallet is NOT credited)
    pending, review open ── approve ──▶ pending, approved (the success callback then posts it)
    pending, charged     ── approve ──▶ succeeded (posted: the wallet is credited now)
    pending (charged or not) ── reject ──▶ failed `review_rejected` (voided). The card was or
        will be charged with nothing credited: the operator refunds it. Either way a payment
        exception says so: one recorded with the rejection when the charge came first (event
        type `review.rejected`), or the usual one for a success after a failure when it comes later
    provider failure ──▶ failed (voided as usual); a rejection then only closes the review

Withdrawal (the money is held on the wallet; the payout is not requested while held):
    pending, review open ── approve ──▶ pending, approved: the payout is requested, then the
        provider's callbacks post, fail or return it as for any withdrawal
    pending, review open ── reject ──▶ failed `review_rejected` (voided: the wallet has it back)
The destination account number is kept sealed under the tenant's data key only while the review
is open, and erased by the decision.

Each decision first locks the product row and records its side of the decision
(`review_status`), so a decision and a provider callback on the same top-up serialize: of an
approval and a success, exactly one of them posts. The review row is marked decided in the
transaction that posts or voids the money (or, when no money moves yet, with `review_status`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import asyncpg
import uuid_utils

from kassa.compliance import DECISIONS, Payment, ReviewDecided, limit_error, mark_decided, with_product
from kassa.events.outbox import NewEvent
from kassa.ledger import PostTransaction, ProductWrite, TransactionNotPending, VoidTransaction
from kassa.ledger.products import run_product_writes
from kassa.payments.adapters import movement_rows
from kassa.payments.adapters.movement_rows import Settlement
from kassa.payments.domain.movements import Topup, Withdrawal, owner_of
from kassa.payments.errors import ProviderCallbackReplayed
from kassa.payments.movements import SETTLEMENTS
from kassa.payments.replays import stored_replay
from kassa.shared.clock import utcnow
from kassa.shared.invariants import invariant
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.compliance import Checked, Decided, HeldProduct, Review
    from kassa.ledger import Applied, CreateTransaction, IdemClaim, ProductWriter, Receipt, Replay, TransactionApplied
    from kassa.payments.domain.providers import ProviderEvent
    from kassa.payments.movements import MovementService
    from kassa.store.pool import Conn

REVIEW_REJECTED = "review_rejected"
REJECTED_AFTER_CHARGE = "review.rejected"  # a payment exception's event type: charged, then rejected


class Checks(Protocol):
    """The compliance service, as top-ups and withdrawals use it."""

    async def check(self, payment: Payment) -> Checked: ...

    def held_product(self, kind: str, product: HeldProduct) -> None: ...


class Vault(Protocol):
    async def seal(self, conn: Conn, tenant_id: str, purpose: str, plaintext: bytes) -> bytes: ...

    async def open(self, conn: Conn, tenant_id: str, purpose: str, sealed: bytes) -> bytes: ...


def _purpose(withdrawal_id: str) -> str:
    return f"withdrawal:{withdrawal_id}:destination"


class MovementCompliance:
    """Wires compliance into a MovementService (bootstrap builds one)."""

    def __init__(self, movements: MovementService, compliance: Checks, vault: Vault) -> None:
        self.movements = movements
        self.compliance = compliance
        self.vault = vault
        movements.compliance = self
        compliance.held_product("topup", _TopupReviews(self))
        compliance.held_product("withdrawal", _WithdrawalReviews(self))

    async def hold(
        self,
        item: Topup | Withdrawal,
        customer_id: str,
        command: CreateTransaction,
        writer: ProductWriter[Any],
        destination: str | None,
        claim: IdemClaim | None,
        receipt: Receipt | None,
    ) -> Applied | TransactionApplied | Replay:
        """The pending transaction and the item's row through the guard. Raises
        CapabilityDisabled, LimitExceeded, BlockedByPolicy and the ledger's errors."""
        stored = await stored_replay(self.movements.pool, claim)
        if stored is not None:
            return stored  # a retry replays its first answer, whatever compliance says now
        topup = isinstance(item, Topup)
        payment = Payment(
            customer_id,
            "incoming" if topup else "outgoing",
            item.amount,
            item.currency,
            command,
            capability="wallet.topup" if topup else "withdrawals",
            product_ref=("topup" if topup else "withdrawal", item.id),
        )
        checked = await self.compliance.check(payment)
        if checked.hold is not None:
            item = replace(item, review_id=checked.hold.review_id, review_status="open")
            if isinstance(item, Withdrawal):
                assert destination is not None
                async with tenant_transaction(self.movements.pool, item.tenant_id) as conn:
                    sealed = await self.vault.seal(conn, item.tenant_id, _purpose(item.id), destination.encode())
                item = replace(item, destination_sealed=sealed)
        product = with_product(checked, ProductWrite(writer, item))
        try:
            return await self.movements.ledger.execute(command, claim=claim, receipt=receipt, product=product)
        except asyncpg.CheckViolationError as exc:
            refused = limit_error(exc)
            if refused is None:
                raise
            raise refused from None

    async def held_charge(self, topup: Topup, event: ProviderEvent) -> bool:
        """A provider's success for a top-up whose review is open: note the charge, credit
        nothing. False when the review is not open (any more): the success applies as usual."""
        async with tenant_transaction(self.movements.pool, topup.tenant_id) as conn:
            held = await conn.fetchval(
                "UPDATE topups SET charged = true, updated_at = now() WHERE tenant_id = $1 AND id = $2"
                " AND review_status = 'open' AND status = 'pending' RETURNING id",
                topup.tenant_id,
                topup.id,
            )
            if held is None:
                return False
            if not await movement_rows.record_callbacks(conn, [(topup.tenant_id, topup.provider, event)], "applied"):
                raise ProviderCallbackReplayed(f"callback {event.id} was already delivered with this signature")
        return True


async def _claim(conn: Conn, table: str, review: Review, target: Literal["approved", "rejected"]) -> asyncpg.Record:
    """Lock the held product's row and record its side of the decision. A decision interrupted
    after this step may be repeated (the same target passes). Raises ReviewDecided."""
    assert table in ("topups", "withdrawals")
    row = await conn.fetchrow(
        f"SELECT * FROM {table} WHERE tenant_id = $1 AND id = $2 FOR UPDATE", review.tenant_id, review.product_id
    )
    invariant(row is not None and row["review_id"] == review.id, "a review names its held product")
    assert row is not None
    if row["review_status"] not in ("open", target):
        raise ReviewDecided(f"review {review.id} is {row['review_status']} already", review_status=row["review_status"])
    # A withdrawal's sealed destination goes with the decision (the row read above still has it).
    erase = ", destination_sealed = NULL" if table == "withdrawals" else ""
    await conn.execute(
        f"UPDATE {table} SET review_status = $3, updated_at = now(){erase} WHERE tenant_id = $1 AND id = $2",
        review.tenant_id,
        review.product_id,
        target,
    )
    return row  # type: ignore[no-any-return]


async def _close(movements: MovementService, decided: Decided) -> None:
    """Mark the review decided where no money moves with the decision."""
    async with tenant_transaction(movements.pool, decided.tenant_id) as conn:
        if not await mark_decided(conn, decided, utcnow()):
            raise ReviewDecided(f"review {decided.review_id} was decided concurrently")


async def _settle(
    movements: MovementService,
    item: Topup | Withdrawal,
    decided: Decided,
    settlement: Settlement,
    extra: ProductWrite[Any] | None = None,
) -> None:
    """Post (approval) or void (rejection) the held transaction with the item's new status and
    the review's decision. A transaction a provider callback settled first the same way only
    closes the review."""
    approve = decided.status == "approved"
    owner = owner_of(item)
    command = (
        PostTransaction(item.tenant_id, item.transaction_id, owner=owner)
        if approve
        else VoidTransaction(item.tenant_id, item.transaction_id, owner=owner)
    )
    inner: ProductWrite[Any] = ProductWrite(SETTLEMENTS, settlement)
    if extra is not None:
        inner = ProductWrite(BOTH, (inner, extra))
    write = ProductWrite(DECISIONS, replace(decided, inner=inner))
    try:
        await movements.ledger.execute(command, product=write)
    except TransactionNotPending:
        async with tenant_transaction(movements.pool, item.tenant_id) as conn:
            table = "topups" if isinstance(item, Topup) else "withdrawals"
            status = await conn.fetchval(
                f"SELECT status FROM {table} WHERE tenant_id = $1 AND id = $2", item.tenant_id, item.id
            )
        if status != ("succeeded" if approve else "failed"):
            raise
        await _close(movements, decided)


class _Both:
    """Two product writes in one job (a settlement and its payment exception)."""

    async def write(
        self,
        conn: Conn,
        applied: Sequence[tuple[tuple[ProductWrite[Any], ...], Applied | TransactionApplied]],
        now: datetime,
    ) -> Sequence[NewEvent]:
        return await run_product_writes(conn, [(w, a) for writes, a in applied for w in writes], now)


BOTH = _Both()


class _ChargedRejections:
    """A top-up rejected after the provider charged the card: a payment exception for an operator
    (the card must be refunded), written with the void."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Topup, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        events = []
        for topup, _ in applied:
            exception_id = "pex_" + uuid_utils.uuid7().hex
            assert topup.review_id is not None
            await conn.execute(
                "INSERT INTO payment_exceptions (tenant_id, id, provider, object_type, object_id, event_id, event_type,"
                " status_at_arrival, failure_code, created_at) VALUES ($1, $2, $3, 'topup', $4, $5, $6, 'pending', $7,"
                " $8)",
                topup.tenant_id,
                exception_id,
                topup.provider,
                topup.id,
                topup.review_id,
                REJECTED_AFTER_CHARGE,
                REVIEW_REJECTED,
                now,
            )
            data = {
                "id": exception_id,
                "provider": topup.provider,
                "object_type": "topup",
                "object_id": topup.id,
                "event_id": topup.review_id,
                "event_type": REJECTED_AFTER_CHARGE,
                "status_at_arrival": "pending",
                "failure_code": REVIEW_REJECTED,
                "created_at": now,
            }
            events.append(NewEvent(topup.tenant_id, "PaymentExceptionRecorded", "topup", topup.id, data))
        return events


CHARGED_REJECTIONS = _ChargedRejections()


class _TopupReviews:
    def __init__(self, owner: MovementCompliance) -> None:
        self.movements = owner.movements

    async def decide(self, review: Review, decided: Decided) -> None:
        approve = decided.status == "approved"
        async with tenant_transaction(self.movements.pool, review.tenant_id) as conn:
            row = await _claim(conn, "topups", review, "approved" if approve else "rejected")
            if row["status"] != "pending" and not (row["status"] == "failed" and not approve):
                raise TransactionNotPending(f"top-up {review.product_id} is {row['status']}")
            if (approve and not row["charged"]) or row["status"] == "failed":
                # Nothing to move now: the success callback posts an approved top-up; a failed
                # one was voided by its provider's failure.
                if not await mark_decided(conn, decided, utcnow()):
                    raise ReviewDecided(f"review {review.id} was decided concurrently")
                return
        topup = await self.movements.get_topup(review.tenant_id, str(review.product_id))
        settlement = (
            Settlement(topup, "succeeded", None, None, review_status="approved")
            if approve
            else Settlement(topup, "failed", REVIEW_REJECTED, None, review_status="rejected")
        )
        extra = ProductWrite(CHARGED_REJECTIONS, topup) if not approve and topup.charged else None
        await _settle(self.movements, topup, decided, settlement, extra)


class _WithdrawalReviews:
    def __init__(self, owner: MovementCompliance) -> None:
        self.movements = owner.movements
        self.vault = owner.vault

    async def decide(self, review: Review, decided: Decided) -> None:
        approve = decided.status == "approved"
        tenant_id, withdrawal_id = review.tenant_id, str(review.product_id)
        async with tenant_transaction(self.movements.pool, tenant_id) as conn:
            row = await _claim(conn, "withdrawals", review, "approved" if approve else "rejected")
            if row["status"] != "pending":
                raise TransactionNotPending(f"withdrawal {withdrawal_id} is {row['status']}")
            if approve:
                sealed = row["destination_sealed"]
                invariant(sealed is not None, "a withdrawal held for review keeps its destination sealed")
                account = (await self.vault.open(conn, tenant_id, _purpose(withdrawal_id), sealed)).decode()
                if not await mark_decided(conn, decided, utcnow()):
                    raise ReviewDecided(f"review {review.id} was decided concurrently")
        withdrawal = await self.movements.get_withdrawal(tenant_id, withdrawal_id)
        if approve:
            await self.movements.pay_out(withdrawal, account)
            return
        settlement = Settlement(withdrawal, "failed", REVIEW_REJECTED, None, review_status="rejected")
        await _settle(self.movements, withdrawal, decided, settlement)
