"""The compliance step of a purchase, and purchases held for review.

A purchase (`outgoing`, capability `purchases`) is checked by `ComplianceService.check` before
its ledger job; the job carries the compliance guard around the purchase's own product write, so
the day and month limits are used in the coalesced transaction that charges the wallet
(kassa.compliance.adapters.guard: one upsert per batch for every guarded purchase in it).
Refusals (`capability_disabled`, `limit_exceeded`, `blocked_by_policy`: 422) change nothing.

A `review` decision holds the purchase (docs/compliance.md, "Payments held for review"):

    pending_review ── approve ──▶ completed: the held transaction is posted, and the purchase
                                  row, its entitlement (its access window starts now) and
                                  `PurchaseCompleted` are written in that same transaction
    pending_review ── reject  ──▶ failed `review_rejected`: the held transaction is voided
                                  (the wallet has its money back); no purchase row, no access

While held, the money is a pending transaction on the wallet and the purchase exists only here
(`held_purchases`): `GET /v1/purchases/{id}` shows it with `status: pending_review`, and the
entitlement check answers `allowed: false`. An approval whose customer has meanwhile become
entitled to the same content by another purchase is refused with 409 `already_entitled` (the
review stays open for the reviewer to reject).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
import msgspec

from kassa.compliance import DECISIONS, Payment, held_command, limit_error, with_product
from kassa.ledger import PostTransaction, ProductWrite, VoidTransaction
from kassa.payments.adapters.ppv_queries import access_json
from kassa.payments.adapters.ppv_rows import PurchaseRow, already_entitled, cache_key
from kassa.payments.domain.content import Access
from kassa.payments.ppv_orders import PURCHASE_OWNER, PURCHASE_TRANSACTIONS
from kassa.payments.ppv_reads import PurchaseReads
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.compliance import Checked, Decided, HeldProduct, Review
    from kassa.compliance.domain.limits import Direction
    from kassa.events.outbox import NewEvent
    from kassa.ledger import Applied, CreateTransaction, TransactionApplied
    from kassa.payments.ppv import PayPerView
    from kassa.payments.ppv_orders import PurchaseOrder
    from kassa.store.pool import Conn

REVIEW_REJECTED = "review_rejected"
_encode = msgspec.json.Encoder().encode


class Checks(Protocol):
    async def facts_many(
        self, conn: Conn, tenant_id: str, customer_ids: list[str], direction: Direction, currency: str
    ) -> dict[str, Any]: ...

    async def check(self, payment: Payment, facts: Any = None) -> Checked: ...

    def held_product(self, kind: str, product: HeldProduct) -> None: ...


@dataclass(frozen=True, slots=True)
class HeldPurchase:
    row: PurchaseRow
    review_id: str


@dataclass(frozen=True, slots=True)
class Release:
    """A review decision on a held purchase: complete it (write the purchase) or fail it."""

    held: HeldPurchase
    approve: bool


class HeldPurchaseWriter:
    """Writes the held purchases of a batch (instead of their purchase rows)."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[HeldPurchase, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        rows = [h for h, _ in applied]
        await conn.execute(
            "INSERT INTO held_purchases (tenant_id, id, customer_id, content_id, transaction_id, review_id, status,"
            " purchase, created_at, updated_at) SELECT t, i, c, k, x, r, 'pending_review', p::jsonb, $8, $8"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
            " AS u(t, i, c, k, x, r, p)",
            [h.row.tenant_id for h in rows],
            [h.row.id for h in rows],
            [h.row.customer_id for h in rows],
            [h.row.content_id for h in rows],
            [_transaction_id(h.row) for h in rows],
            [h.review_id for h in rows],
            [_stored(h.row) for h in rows],
            now,
        )
        return []


class ReleaseWriter:
    """Completes (the purchase writer's rows, entitlement and event) or fails held purchases."""

    async def write(
        self, conn: Conn, applied: Sequence[tuple[Release, Applied | TransactionApplied]], now: datetime
    ) -> Sequence[NewEvent]:
        from kassa.payments.ppv import PURCHASES  # ppv imports this module

        await conn.execute(
            "UPDATE held_purchases h SET status = u.s, failure_code = u.f, updated_at = $5"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(t, i, s, f)"
            " WHERE h.tenant_id = u.t AND h.id = u.i AND h.status = 'pending_review'",
            [r.held.row.tenant_id for r, _ in applied],
            [r.held.row.id for r, _ in applied],
            ["completed" if r.approve else "failed" for r, _ in applied],
            [None if r.approve else REVIEW_REJECTED for r, _ in applied],
            now,
        )
        completed = [(r.held.row, a) for r, a in applied if r.approve]
        return await PURCHASES.write(conn, completed, now) if completed else []


HELD = HeldPurchaseWriter()
RELEASES = ReleaseWriter()


def _stored(row: PurchaseRow) -> str:
    """The purchase row as held_purchases keeps it (its fields, access as the catalogue stores it)."""
    fields = {f: getattr(row, f) for f in row.__dataclass_fields__ if f != "access"}
    return _encode({**fields, "access": access_json(row.access)}).decode()


def _row(stored: Any) -> PurchaseRow:
    data = msgspec.json.decode(stored) if isinstance(stored, str | bytes) else dict(stored)
    a = data.pop("access")
    access = Access(a["window"], _time(a["starts_at"]), _time(a["ends_at"]), a["replay_days"], a["duration_s"])
    # Released by a review: priced when held (not against today's catalogue), and the customer's
    # entitlements are looked at by the write (one whose window ended meanwhile is expired).
    fixed = {"rights_holders": tuple(data.get("rights_holders", ())), "expire": True, "priced_now": False}
    return PurchaseRow(**{**data, "legs": tuple(data["legs"]), "access": access, **fixed})


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _transaction_id(row: PurchaseRow) -> str:
    return PURCHASE_TRANSACTIONS + row.id


class PurchaseCompliance:
    """Wires compliance into pay-per-view purchases (bootstrap builds one)."""

    def __init__(self, ppv: PayPerView, compliance: Checks) -> None:
        self.ppv = ppv
        self.compliance = compliance
        # The wallets and compliance facts of concurrent purchases, read together.
        self.reads = PurchaseReads(ppv.pool, ppv.lookups, self.facts_many)
        ppv.compliance = self
        compliance.held_product("purchase", self)

    async def guard(self, order: PurchaseOrder) -> tuple[CreateTransaction, ProductWrite[Any]]:
        """The purchase's command and product write through the guard: as they were, or pending
        and held for review. Raises CapabilityDisabled, LimitExceeded, BlockedByPolicy."""
        from kassa.payments.ppv import PURCHASES  # ppv imports this module

        row = order.row
        payment = Payment(
            row.customer_id,
            "outgoing",
            row.price,
            row.currency,
            order.command,
            capability="purchases",
            product_ref=("purchase", row.id),
        )
        checked = await self.compliance.check(payment, order.compliance)
        if checked.hold is None:
            return order.command, with_product(checked, ProductWrite(PURCHASES, row))
        command = held_command(checked)
        command = replace(command, metadata={**command.metadata, "review_id": checked.hold.review_id})
        return command, with_product(checked, ProductWrite(HELD, HeldPurchase(row, checked.hold.review_id)))

    @staticmethod
    def refused(exc: asyncpg.CheckViolationError) -> Exception:
        """The 422 `limit_exceeded` for the guard's in-transaction refusal; else the error itself."""
        return limit_error(exc) or exc

    async def facts_many(self, conn: Conn, tenant_id: str, customer_ids: list[str], currency: str) -> dict[str, Any]:
        """The compliance reads of several purchases of one tenant, in their coalesced read."""
        return await self.compliance.facts_many(conn, tenant_id, customer_ids, "outgoing", currency)

    async def held(self, tenant_id: str, purchase_id: str) -> dict[str, Any] | None:
        """A held (or decided) purchase in the shape of `ppv.get_purchase`, or None."""
        async with tenant_transaction(self.ppv.pool, tenant_id) as conn:
            found = await conn.fetchrow(
                "SELECT status, failure_code, review_id, purchase, created_at FROM held_purchases"
                " WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                purchase_id,
            )
        if found is None:
            return None
        row = _row(found["purchase"])
        return {
            "id": row.id,
            "customer_id": row.customer_id,
            "content_id": row.content_id,
            "currency": row.currency,
            "price": row.price,
            "platform_fee_bps": row.platform_fee_bps,
            "platform_fee_min": row.platform_fee_min,
            "legs": list(row.legs),
            "transaction_id": _transaction_id(row),
            "entitlement_id": None,
            "refunded_amount": 0,
            "created_at": found["created_at"],
            "refunds": [],
            "status": found["status"],
            "failure_code": found["failure_code"],
            "review_id": found["review_id"],
        }

    async def decide(self, review: Review, decided: Decided) -> None:
        """Post and complete, or void and fail, the held purchase. Raises AlreadyEntitled,
        TransactionNotPending (the hold expired, or the review was decided concurrently)."""
        async with tenant_transaction(self.ppv.pool, review.tenant_id) as conn:
            raw = await conn.fetchval(
                "SELECT purchase FROM held_purchases WHERE tenant_id = $1 AND id = $2",
                review.tenant_id,
                review.product_id,
            )
        assert raw is not None  # a review names its held purchase
        row = _row(raw)
        approve = decided.status == "approved"
        command = (
            PostTransaction(review.tenant_id, review.transaction_id, owner=PURCHASE_OWNER)
            if approve
            else VoidTransaction(review.tenant_id, review.transaction_id, owner=PURCHASE_OWNER)
        )
        release = ProductWrite(RELEASES, Release(HeldPurchase(row, review.id), approve))
        try:
            await self.ppv.ledger.execute(command, product=ProductWrite(DECISIONS, replace(decided, inner=release)))
        except asyncpg.UniqueViolationError as exc:
            raise already_entitled(exc, row) from None
        if approve:
            await self.ppv.cache.forget(cache_key(row.tenant_id, row.customer_id, row.content_id))
