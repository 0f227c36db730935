"""Pay-per-view service: purchases, entitlement checks and refunds, on top of its catalogue
(`catalogue.py`, which it extends); no HTTP in it.

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

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.ledger import (
    Applied,
    InsufficientFunds,
    ProductWrite,
    TransactionApplied,
)
from kassa.payments.adapters import ppv_queries as q
from kassa.payments.adapters.ppv_rows import (
    ACCESS_ENDED,
    PurchaseRow,
    PurchaseWriter,
    RefundRow,
    RefundWriter,
    already_entitled,
    cache_key,
    notify,
    purchase_entitlement,
)
from kassa.payments.catalogue import Catalogue
from kassa.payments.domain import entitlements as ent
from kassa.payments.entitlement_cache import Cache, EntitlementCache
from kassa.payments.errors import (
    AlreadyEntitled,
    ContentAccessEnded,
    ContentNotFound,
    EntitlementNotActive,
    EntitlementNotFound,
    PricedFromStaleContent,
    PriceNotAvailable,
    PurchaseNotFound,
    RefundExceedsPurchase,
    WalletNotFound,
)
from kassa.payments.ppv_lookups import WalletReader
from kassa.payments.ppv_orders import (
    PURCHASE_OWNER,
    PURCHASE_TRANSACTIONS,
    REFUND_OWNER,
    REFUND_TRANSACTIONS,
    PurchaseOrder,
    RefundOrder,
    purchase_order,
    refund_order,
)
from kassa.payments.replays import kept_refusal, stored_replay
from kassa.shared.clock import utcnow
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant
from kassa.shared.limits import purchase_retry_max, refund_retry_max
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.identity.customers import CustomerService
    from kassa.ledger import CreateTransaction, IdemClaim, LedgerService, Receipt, Replay
    from kassa.payments.accounts import PlatformAccounts
    from kassa.payments.domain.content import Content
    from kassa.payments.held_purchases import PurchaseCompliance
    from kassa.store.pool import Pool

PURCHASES = PurchaseWriter()
REFUNDS = RefundWriter()
# Refusals of a purchase that a later state can undo (and a refund's PurchaseNotFound); their
# answer is kept under the key as the ledger keeps insufficient_funds. Compliance refusals are
# not: a retry may pass after KYC.
_KEPT_REFUSALS = (ContentNotFound, PriceNotAvailable, ContentAccessEnded, WalletNotFound, AlreadyEntitled)


class PayPerView(Catalogue):
    def __init__(
        self,
        pool: Pool,
        ledger: LedgerService,
        customers: CustomerService,
        accounts: PlatformAccounts,
        cache: Cache | None = None,
    ) -> None:
        super().__init__(pool, customers, accounts)
        self.ledger = ledger
        self.cache = cache or EntitlementCache()
        # The compliance step of purchases (held_purchases.py), wired by bootstrap; None: without.
        self.compliance: PurchaseCompliance | None = None
        self.wallets = WalletReader(pool, self.lookups)
        self.cache.index_buyers(self._buyers)
        ledger.reserve_ids(PURCHASE_OWNER, PURCHASE_TRANSACTIONS)  # no client takes a purchase's id first
        ledger.reserve_ids(REFUND_OWNER, REFUND_TRANSACTIONS)

    async def stored_replay(self, claim: IdemClaim | None) -> Replay | None:
        """The stored response of an Idempotency-Key already used, looked up when a request is
        refused before the ledger (a retry of a purchase must replay it, not answer
        already_entitled; a retry of a refund is looked up before it is computed). The key is
        not kept: the ledger claims it again in the transaction of the effect. Raises
        IdempotencyKeyReused, IdempotencyKeyInFlight."""
        return await stored_replay(self.pool, claim)

    # Purchases --------------------------------------------------------------------------
    async def prepare_purchase(
        self, tenant_id: str, customer_id: str, content_id: str, currency: str, *, fresh: bool = False
    ) -> PurchaseOrder:
        """Resolve price, split and wallet. From this process's lookups when it has them: a
        purchase then reads nothing before its ledger batch, unless its wallet is not known
        yet (read together with the other purchases' wallets) or the entitlement cache cannot
        answer. Any refusal is decided on rows read from the database. Raises
        ContentNotFound, PriceNotAvailable, ContentAccessEnded, WalletNotFound, AlreadyEntitled.
        With `fresh`, the entitlement is read from the database, past the cache."""
        content = await self._content_on_sale(tenant_id, content_id, currency)
        key = cache_key(tenant_id, customer_id, content_id)
        facts: Any = None
        if self.compliance is None:
            wallet = await self.wallets.account(tenant_id, customer_id, currency)
        else:
            # The wallet (when not known yet) and the compliance facts, read together with the
            # reads of concurrent purchases (ppv_reads.py).
            wallet, facts = await self.compliance.reads.read(tenant_id, customer_id, currency)
        if wallet is None:
            raise WalletNotFound(f"customer '{customer_id}' has no {currency} wallet")
        if fresh:
            entitlement = await self._deciding(tenant_id, customer_id, content_id)
        else:
            entitlement = await self.cache.fetch(key, lambda: self._deciding(tenant_id, customer_id, content_id))
        if ent.check(entitlement, utcnow()).allowed:
            raise AlreadyEntitled(f"customer '{customer_id}' already has access to content '{content_id}'")
        return purchase_order(content, customer_id, currency, wallet, entitlement, facts)

    async def _content_on_sale(self, tenant_id: str, content_id: str, currency: str) -> Content:
        """The content to price from, from this process's lookups when they have it. A refusal
        (no price in `currency`, an access window already over) is decided on the row as it is
        now, not as cached: the content may have been priced or extended since. Raises
        ContentNotFound, PriceNotAvailable, ContentAccessEnded."""
        content = self.lookups.content(tenant_id, content_id)
        if content is None or currency not in content.prices or ent.access_ended(content.access, utcnow()):
            content = await self.get_content(tenant_id, content_id)
            self.lookups.remember_content(content)
            if currency not in content.prices:
                raise PriceNotAvailable(f"content '{content_id}' has no price in {currency}")
            if ent.access_ended(content.access, utcnow()):
                raise ContentAccessEnded(f"the access window of content '{content_id}' has ended")
        return content

    async def _buyers(self, tenant_id: str, content_id: str, limit: int) -> list[str]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await q.buyers(conn, tenant_id, content_id, limit)

    async def _deciding(self, tenant_id: str, customer_id: str, content_id: str) -> ent.Entitlement | None:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await q.deciding_entitlement(conn, tenant_id, customer_id, content_id)

    async def purchase(
        self,
        order: PurchaseOrder,
        claim: IdemClaim | None = None,
        receipt: Receipt | None = None,
        trace_id: str | None = None,
    ) -> TransactionApplied | Replay:
        """Charge the wallet and write purchase, entitlement and event together. Raises
        AlreadyEntitled (a concurrent purchase of the same content won), PricedFromStaleContent
        (another process changed the content since this one cached it; nothing charged),
        ContentAccessEnded (the window ended by the batch's database time, the clock the
        entitlement is written with; nothing charged), InsufficientFunds and the ledger's other
        errors, IdempotencyKeyReused, IdempotencyKeyInFlight."""
        row = order.row
        key = cache_key(row.tenant_id, row.customer_id, row.content_id)
        seen = self.cache.seen(key)
        command, product = await self._compliance_step(order)
        try:
            result = await self.ledger.execute(
                command, claim=claim, receipt=receipt, product=product, trace_id=trace_id
            )
        except asyncpg.UniqueViolationError as exc:
            raise already_entitled(exc, row) from None
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name == "purchases_content_current":
                self.lookups.forget_content(row.tenant_id, row.content_id)
                raise PricedFromStaleContent(
                    f"content '{row.content_id}' changed while the purchase was priced"
                ) from None
            if exc.constraint_name == ACCESS_ENDED:
                raise ContentAccessEnded(f"the access window of content '{row.content_id}' has ended") from None
            if self.compliance is None:
                raise
            raise self.compliance.refused(exc) from None
        invariant(not isinstance(result, Applied), "a purchase is a multi-leg transaction")
        assert not isinstance(result, Applied)  # narrowing for mypy
        written = result.transaction if isinstance(result, TransactionApplied) and result.created else None
        if written is not None and written.status == "posted" and written.created_at is not None:
            # (a purchase held for review is a pending transaction and gives no access yet)
            await self.cache.written(key, seen, purchase_entitlement(row, written.created_at))
        else:
            await self.cache.forget(key)
        return result

    async def _compliance_step(self, order: PurchaseOrder) -> tuple[CreateTransaction, ProductWrite[Any]]:
        """Capability, limits and rules (422s), and the guard the ledger job carries; a purchase
        held for review is a pending transaction with no purchase row yet (held_purchases.py)."""
        if self.compliance is None:
            return order.command, ProductWrite(PURCHASES, order.row)
        return await self.compliance.guard(order)

    async def buy(
        self,
        tenant_id: str,
        customer_id: str,
        content_id: str,
        currency: str,
        claim: IdemClaim | None = None,
        receipt_for: Callable[[PurchaseRow], Receipt] | None = None,
        trace_id: str | None = None,
        refusal: Callable[[KassaError], tuple[int, bytes]] | None = None,
    ) -> tuple[PurchaseRow | None, TransactionApplied | Replay]:
        """Prepare and charge a purchase; the row is None for a replayed Idempotency-Key.

        Nothing is read for the key before pricing: the ledger claims it in the transaction of
        the effect and answers a retry with the stored response. Only a purchase refused while
        pricing looks its key up, so that a retry of a purchase that went through replays it
        rather than answering already_entitled. A purchase priced from a stale view (a content
        another process changed, an entitlement this process had not seen) is priced again
        from the database. A refusal of the purchase itself (no such content or price or
        wallet, access window over, already entitled) is kept under the key as `refusal` renders it, so that a
        retry replays it even after the state changed. Raises what prepare_purchase and
        purchase raise."""
        attempt, fresh = 0, False
        while True:
            attempt += 1
            try:
                order = await self.prepare_purchase(tenant_id, customer_id, content_id, currency, fresh=fresh)
            except KassaError as error:
                return await self._refusal(claim, error, refusal)
            try:
                receipt = receipt_for(order.row) if receipt_for else None
                return order.row, await self.purchase(order, claim, receipt, trace_id)
            except ContentAccessEnded as error:
                return await self._refusal(claim, error, refusal)
            except AlreadyEntitled as error:
                if order.row.expire or attempt == purchase_retry_max:
                    return await self._refusal(claim, error, refusal)
                # Priced on a cached "no entitlement": ask the database (an entitlement whose
                # window ended must be expired by the write, one that gives access refuses).
                fresh = True
                await self.cache.forget(cache_key(tenant_id, customer_id, content_id))
            except PricedFromStaleContent:
                if attempt == purchase_retry_max:
                    raise

    async def _refusal(
        self, claim: IdemClaim | None, error: KassaError, refusal: Callable[[KassaError], tuple[int, bytes]] | None
    ) -> tuple[None, Replay]:
        """A refused purchase's answer: the key's stored one, or `error` raised once kept."""
        stored = await self._refused(claim, error, refusal)
        if stored is None:
            raise error
        return None, stored

    async def _refused(
        self, claim: IdemClaim | None, error: KassaError, refusal: Callable[[KassaError], tuple[int, bytes]] | None
    ) -> Replay | None:
        if refusal is None or not isinstance(error, _KEPT_REFUSALS):
            return await self.stored_replay(claim)
        return await kept_refusal(self.pool, claim, *refusal(error))

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
        return refund_order(tenant_id, purchase, amount, reason, refund_fee)

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
        refusal: Callable[[KassaError], tuple[int, bytes]] | None = None,
    ) -> tuple[RefundRow, TransactionApplied | Replay]:
        """Reverse (part of) a purchase. A refund computed from a state another refund changed
        first is recomputed from the new one, so concurrent refunds never exceed the price. A
        refusal for no such completed purchase (a held one is not refundable yet) is kept under
        the key as `refusal` renders it, so a retry after the purchase was approved replays it.
        Raises PurchaseNotFound, InvalidRequest, RefundExceedsPurchase and the ledger's errors."""
        for _attempt in range(refund_retry_max):
            try:
                order = await self.prepare_refund(tenant_id, purchase_id, amount, reason, refund_fee)
            except PurchaseNotFound as error:
                if refusal is not None:
                    # The caller replayed a stored answer before calling; one stored since can
                    # only be a racing request with this key, which answered on its own.
                    await kept_refusal(self.pool, claim, *refusal(error))
                raise
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
