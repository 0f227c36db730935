"""Pay-per-view service: catalogue, purchases, entitlement checks and refunds (no HTTP in it).

A purchase is ONE multi-leg ledger transaction (the buyer's wallet pays the platform fee and
each rights holder's payable) submitted through the batcher with a `ProductWrite` that writes
the purchase row, its entitlement and its `PurchaseCompleted` event in the same database
transaction (`adapters/ppv_rows.py`). A refund is the reverse transaction, allocated over the
same legs (`domain/splits.py`).

A rights holder's payable (`payable:<customer>:<CUR>`) may go negative: when a refund claws
back money already paid out, the holder owes it, and its later sales credit the same account
first, so the debt is recovered from them before anything more can be paid out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from kassa.ledger import (
    Applied,
    CreateTransaction,
    InsufficientFunds,
    NewPosting,
    ProductWrite,
    TransactionApplied,
)
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.adapters import ppv_queries as q
from kassa.payments.adapters import wallet_rows
from kassa.payments.adapters.ppv_rows import (
    PurchaseRow,
    PurchaseWriter,
    RefundRow,
    RefundWriter,
    cache_key,
    notify,
)
from kassa.payments.domain import entitlements as ent
from kassa.payments.domain.content import Content, check_content
from kassa.payments.domain.splits import allocate_refund, refundable, split_price
from kassa.payments.entitlement_cache import Cache, EntitlementCache
from kassa.payments.errors import (
    AlreadyEntitled,
    ContentExists,
    ContentNotFound,
    EntitlementNotActive,
    EntitlementNotFound,
    PriceNotAvailable,
    PurchaseNotFound,
    RefundExceedsPurchase,
    WalletNotFound,
)
from kassa.payments.replays import stored_replay
from kassa.shared.clock import utcnow
from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import refund_retry_max
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.identity.customers import CustomerService
    from kassa.ledger import IdemClaim, LedgerService, Receipt, Replay
    from kassa.payments.accounts import PlatformAccounts
    from kassa.payments.held_purchases import PurchaseCompliance
    from kassa.store.pool import Conn, Pool

PURCHASES = PurchaseWriter()
REFUNDS = RefundWriter()


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    """What a purchase request resolved to, before the ledger applies it."""

    row: PurchaseRow
    command: CreateTransaction
    compliance: Any = None  # what the compliance step read in the same transaction (held_purchases.py)


@dataclass(frozen=True, slots=True)
class RefundOrder:
    row: RefundRow
    command: CreateTransaction


def _hash(value: Any) -> bytes:
    return hashlib.sha256(msgspec.json.encode(value, order="sorted")).digest()


class PayPerView:
    def __init__(
        self,
        pool: Pool,
        ledger: LedgerService,
        customers: CustomerService,
        accounts: PlatformAccounts,
        cache: Cache | None = None,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.customers = customers  # identity: rights holders are its business customers
        self.accounts = accounts
        self.cache = cache or EntitlementCache()
        # The compliance step of purchases (held_purchases.py), wired by bootstrap; None: without.
        self.compliance: PurchaseCompliance | None = None

    async def stored_replay(self, claim: IdemClaim | None) -> Replay | None:
        """The stored response of an Idempotency-Key already used, looked up before anything is
        prepared (a retry of a purchase must replay it, not answer already_entitled). The key is
        not kept: the ledger claims it again in the transaction of the effect. Raises
        IdempotencyKeyReused, IdempotencyKeyInFlight."""
        return await stored_replay(self.pool, claim)

    # Catalogue --------------------------------------------------------------------------
    async def _check_holders_and_accounts(self, content: Content) -> None:
        """Every rights holder is a business customer; the fee account and each holder's payable
        exist in every priced currency (created on first use). Raises CustomerNotFound,
        InvalidRequest."""
        for holder in content.rights_holders:
            customer = await self.customers.get_customer(content.tenant_id, holder.customer_id)
            if customer.type != "business":
                raise InvalidRequest(f"rights_holders: customer '{holder.customer_id}' is not a business")
        for currency in content.prices:
            await self.accounts.ensure(content.tenant_id, fees_account(currency))
            for holder in content.rights_holders:
                await self.accounts.ensure(content.tenant_id, payable_account(holder.customer_id, currency))

    async def create_content(self, content: Content) -> Content:
        """Raises InvalidRequest, CustomerNotFound (a rights holder), ContentExists."""
        check_content(content)
        await self._check_holders_and_accounts(content)
        async with tenant_transaction(self.pool, content.tenant_id) as conn:
            created = await q.insert_content(conn, content)
        if created is None:
            raise ContentExists(f"content '{content.id}' already exists")
        return created

    async def update_content(self, content: Content) -> Content:
        """Replace a content's fields; past purchases keep their own copy. Raises
        InvalidRequest, CustomerNotFound (a rights holder), ContentNotFound."""
        check_content(content)
        await self._check_holders_and_accounts(content)
        async with tenant_transaction(self.pool, content.tenant_id) as conn:
            updated = await q.update_content(conn, content)
        if updated is None:
            raise ContentNotFound(f"content '{content.id}' does not exist")
        return updated

    async def get_content(self, tenant_id: str, content_id: str) -> Content:
        """Raises ContentNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await q.get_content(conn, tenant_id, content_id)
        if found is None:
            raise ContentNotFound(f"content '{content_id}' does not exist")
        return found

    async def list_content(self, tenant_id: str, after_id: str | None, limit: int) -> list[Content]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await q.list_content(conn, tenant_id, after_id, limit)

    # Purchases --------------------------------------------------------------------------
    async def prepare_purchase(self, tenant_id: str, customer_id: str, content_id: str, currency: str) -> PurchaseOrder:
        """Resolve price, split and wallet. Raises ContentNotFound, PriceNotAvailable,
        WalletNotFound, AlreadyEntitled."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            content = await q.get_content(conn, tenant_id, content_id)
            if content is None:
                raise ContentNotFound(f"content '{content_id}' does not exist")
            price = content.prices.get(currency)
            if price is None:
                raise PriceNotAvailable(f"content '{content_id}' has no price in {currency}")
            wallets = await wallet_rows.of_customer(conn, tenant_id, customer_id, currency)
            if not wallets:
                raise WalletNotFound(f"customer '{customer_id}' has no {currency} wallet")
            wallet = wallets[0].account_id
            # The cached check, loaded (on a miss) in this transaction rather than another one.
            entitlement = await self.cache.fetch(
                cache_key(tenant_id, customer_id, content_id),
                lambda: q.deciding_entitlement(conn, tenant_id, customer_id, content_id),
            )
            facts = await self._compliance_facts(conn, tenant_id, customer_id, currency)
        if ent.check(entitlement, utcnow()).allowed:
            raise AlreadyEntitled(f"customer '{customer_id}' already has access to content '{content_id}'")
        holders = [(h.customer_id, h.share_bps) for h in content.rights_holders]
        legs = split_price(price, content.platform_fee_bps, content.platform_fee_min, holders)
        leg_rows: tuple[dict[str, Any], ...] = tuple(
            {
                "role": leg.role,
                "customer_id": leg.customer_id,
                "account_id": (
                    fees_account(currency) if leg.customer_id is None else payable_account(leg.customer_id, currency)
                ).id,
                "amount": leg.amount,
            }
            for leg in legs
        )
        purchase_id = new_id()
        row = PurchaseRow(
            tenant_id,
            purchase_id,
            new_id(),
            customer_id,
            content_id,
            currency,
            price,
            content.platform_fee_bps,
            content.platform_fee_min,
            wallet,
            leg_rows,
            content.access,
        )
        postings = tuple(
            NewPosting(wallet, leg["account_id"], leg["amount"], currency) for leg in leg_rows if leg["amount"]
        )
        command = CreateTransaction(
            tenant_id,
            f"purchase:{purchase_id}",
            postings,
            False,
            None,
            None,
            {"purchase_id": purchase_id, "content_id": content_id},
            _hash([purchase_id, leg_rows]),
            generated_id=True,
        )
        return PurchaseOrder(row, command, facts)

    async def purchase(
        self,
        order: PurchaseOrder,
        claim: IdemClaim | None = None,
        receipt: Receipt | None = None,
        trace_id: str | None = None,
    ) -> TransactionApplied | Replay:
        """Charge the wallet and write purchase, entitlement and event together. Raises
        AlreadyEntitled (a concurrent purchase of the same content won), InsufficientFunds and
        the ledger's other errors, IdempotencyKeyReused, IdempotencyKeyInFlight."""
        row = order.row
        command, product = await self._compliance_step(order)
        try:
            result = await self.ledger.execute(
                command, claim=claim, receipt=receipt, product=product, trace_id=trace_id
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "entitlements_one_active":
                raise
            raise AlreadyEntitled(
                f"customer '{row.customer_id}' already has access to content '{row.content_id}'"
            ) from None
        except asyncpg.CheckViolationError as exc:
            if self.compliance is None:
                raise
            raise self.compliance.refused(exc) from None
        await self.cache.forget(cache_key(row.tenant_id, row.customer_id, row.content_id))
        invariant(not isinstance(result, Applied), "a purchase is a multi-leg transaction")
        assert not isinstance(result, Applied)  # narrowing for mypy
        return result

    async def _compliance_facts(self, conn: Conn, tenant_id: str, customer_id: str, currency: str) -> Any:
        """What the compliance step reads, in the purchase's own read transaction (no other)."""
        if self.compliance is None:
            return None
        return await self.compliance.facts(conn, tenant_id, customer_id, currency)

    async def _compliance_step(self, order: PurchaseOrder) -> tuple[CreateTransaction, ProductWrite[Any]]:
        """Capability, limits and rules (422s), and the guard the ledger job carries; a purchase
        held for review is a pending transaction with no purchase row yet (held_purchases.py)."""
        if self.compliance is None:
            return order.command, ProductWrite(PURCHASES, order.row)
        return await self.compliance.guard(order)

    async def get_purchase(self, tenant_id: str, purchase_id: str) -> dict[str, Any]:
        """Raises PurchaseNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await q.get_purchase(conn, tenant_id, purchase_id)
            if found is not None:
                found["refunds"] = await q.list_refunds(conn, tenant_id, purchase_id)
        if found is None and self.compliance is not None:
            found = await self.compliance.held(tenant_id, purchase_id)  # held for review, or rejected
        if found is None:
            raise PurchaseNotFound(f"purchase '{purchase_id}' does not exist")
        return found

    async def list_purchases(
        self, tenant_id: str, customer_id: str, before_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await q.list_purchases(conn, tenant_id, customer_id, before_id, limit)

    # Entitlements -----------------------------------------------------------------------
    async def check(self, tenant_id: str, customer_id: str, content_id: str) -> ent.Check:
        """May the customer watch now? Served from the cache when it can be."""

        async def load() -> ent.Entitlement | None:
            async with tenant_transaction(self.pool, tenant_id) as conn:
                return await q.deciding_entitlement(conn, tenant_id, customer_id, content_id)

        entitlement = await self.cache.fetch(cache_key(tenant_id, customer_id, content_id), load)
        return ent.check(entitlement, utcnow())

    async def list_entitlements(
        self, tenant_id: str, customer_id: str, before_id: str | None, limit: int
    ) -> list[ent.Entitlement]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await q.list_entitlements(conn, tenant_id, customer_id, before_id, limit)
        now = utcnow()
        return [replace(e, status=ent.status_at(e, now)) for e in found]

    async def play(self, tenant_id: str, entitlement_id: str) -> ent.Entitlement:
        """Record a play: the first one sets `first_used_at` and starts a from-first-play
        window. Raises EntitlementNotFound, EntitlementNotActive."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await q.lock_entitlement(conn, tenant_id, entitlement_id)
            if found is None:
                raise EntitlementNotFound(f"entitlement '{entitlement_id}' does not exist")
            now = utcnow()
            answer = ent.check(found, now)
            if not answer.allowed:
                raise EntitlementNotActive(f"entitlement '{entitlement_id}' gives no access now ({answer.reason})")
            played = ent.first_play(found, now)
            if played != found:
                await q.record_play(conn, played)
                await notify(conn, [cache_key(tenant_id, found.customer_id, found.content_id)])
        await self.cache.forget(cache_key(tenant_id, found.customer_id, found.content_id))
        return played

    # Refunds ----------------------------------------------------------------------------
    async def prepare_refund(
        self, tenant_id: str, purchase_id: str, amount: int | None, reason: str, refund_fee: bool
    ) -> RefundOrder:
        """The refund's legs from the purchase's current state. Raises PurchaseNotFound,
        InvalidRequest, RefundExceedsPurchase."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            purchase = await q.get_purchase(conn, tenant_id, purchase_id)
        if purchase is None:
            raise PurchaseNotFound(f"purchase '{purchase_id}' does not exist")
        legs = [leg["amount"] for leg in purchase["legs"]]
        refunded = list(purchase["refunded_legs"])
        available = refundable(legs, refunded, refund_fee)
        wanted = available if amount is None else amount
        if wanted > available or available == 0:
            raise RefundExceedsPurchase(f"at most {available} {purchase['currency']} can still be refunded")
        shares = allocate_refund(wanted, legs, refunded, refund_fee)
        after = tuple(r + s for r, s in zip(refunded, shares, strict=True))
        invariant(all(a <= leg for a, leg in zip(after, legs, strict=True)), "no leg is refunded above its amount")
        leg_rows = tuple({**leg, "amount": share} for leg, share in zip(purchase["legs"], shares, strict=True))
        refund_id = new_id()
        wallet, currency = purchase["wallet_account_id"], purchase["currency"]
        row = RefundRow(
            tenant_id,
            refund_id,
            purchase_id,
            purchase["customer_id"],
            purchase["content_id"],
            purchase["refund_count"] + 1,
            wanted,
            refund_fee,
            reason,
            leg_rows,
            purchase["refunded_amount"] + wanted,
            after,
            sum(after) == sum(legs),
        )
        postings = tuple(
            NewPosting(leg["account_id"], wallet, leg["amount"], currency) for leg in leg_rows if leg["amount"]
        )
        command = CreateTransaction(
            tenant_id,
            f"refund:{refund_id}",
            postings,
            False,
            None,
            None,
            {"purchase_id": purchase_id, "refund_id": refund_id},
            _hash([refund_id, leg_rows]),
            generated_id=True,
        )
        return RefundOrder(row, command)

    async def _refunded_since(self, tenant_id: str, purchase_id: str, refund_count: int) -> bool:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            purchase = await q.get_purchase(conn, tenant_id, purchase_id)
        return purchase is not None and purchase["refund_count"] != refund_count

    async def refund(
        self,
        tenant_id: str,
        purchase_id: str,
        amount: int | None,
        reason: str,
        refund_fee: bool,
        claim: IdemClaim | None = None,
        receipt_for: Callable[[RefundRow], Receipt] | None = None,
        trace_id: str | None = None,
    ) -> tuple[RefundRow, TransactionApplied | Replay]:
        """Reverse (part of) a purchase. A refund computed from a state another refund changed
        first is recomputed from the new one, so concurrent refunds never exceed the price.
        Raises PurchaseNotFound, InvalidRequest, RefundExceedsPurchase and the ledger's errors."""
        for _attempt in range(refund_retry_max):
            order = await self.prepare_refund(tenant_id, purchase_id, amount, reason, refund_fee)
            try:
                receipt = receipt_for(order.row) if receipt_for else None
                result = await self.ledger.execute(
                    order.command,
                    claim=claim,
                    receipt=receipt,
                    product=ProductWrite(REFUNDS, order.row),
                    trace_id=trace_id,
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "refunds_purchase_seq":
                    raise
                continue
            except InsufficientFunds:
                # A leg account (the fee's, say) was short because a concurrent refund of this
                # purchase took its share first, in the same batch: recompute from the new state.
                if not await self._refunded_since(tenant_id, purchase_id, order.row.seq - 1):
                    raise
                continue
            if order.row.revokes:
                await self.cache.forget(cache_key(tenant_id, order.row.customer_id, order.row.content_id))
            invariant(not isinstance(result, Applied), "a refund is a multi-leg transaction")
            assert not isinstance(result, Applied)  # narrowing for mypy
            return order.row, result
        raise RefundExceedsPurchase("the purchase kept changing under concurrent refunds; retry")
