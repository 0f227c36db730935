"""The pay-per-view catalogue: content and its rights holders' accounts (no HTTP in it).

Part of the pay-per-view service (`PayPerView` extends it): a content's rights holders must be
business customers of identity, and creating or updating a content creates, once, the ledger
accounts its sales credit. `POST /v1/content` keeps its answer under an Idempotency-Key with
the shared records of `kassa.store.idempotency`, as wallets do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.identity import CustomerNotFound
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.adapters import ppv_queries as q
from kassa.payments.domain.content import Content, check_content
from kassa.payments.errors import ContentExists, ContentNotFound
from kassa.payments.ppv_lookups import PurchaseLookups
from kassa.payments.replays import kept_refusal, stored_replay
from kassa.shared.errors import InvalidRequest, KassaError
from kassa.shared.invariants import invariant
from kassa.store import idempotency
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.identity.customers import CustomerService
    from kassa.payments.accounts import PlatformAccounts
    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Pool


class Catalogue:
    def __init__(self, pool: Pool, customers: CustomerService, accounts: PlatformAccounts) -> None:
        self.pool = pool
        self.customers = customers  # identity: rights holders are its business customers
        self.accounts = accounts
        # What pricing a purchase reads, kept per process (ppv_lookups.py); an update drops its entry.
        self.lookups = PurchaseLookups()

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

    async def create_content(
        self,
        content: Content,
        claim: IdemClaim | None = None,
        receipt: Callable[[Content | KassaError], tuple[int, bytes]] | None = None,
    ) -> Content | Replay:
        """Create a content; a Replay for an Idempotency-Key used before. With a `claim`, the
        outcome is kept under the key as `receipt` renders it, in the transaction that inserts
        the content: the 201, or a refusal decided on state (a rights holder not found, the id
        taken), as wallets keep theirs; a validation error (400) is not kept. Raises
        InvalidRequest, CustomerNotFound (a rights holder), ContentExists, IdempotencyKeyReused,
        IdempotencyKeyInFlight."""
        invariant(claim is None or receipt is not None, "a claimed key is completed with a receipt")
        check_content(content)
        # A retry answers before the holders are checked again (they may have changed since).
        replay = await stored_replay(self.pool, claim)
        if replay is not None:
            return replay
        try:
            await self._check_holders_and_accounts(content)
        except CustomerNotFound as error:
            kept = await kept_refusal(self.pool, claim, *receipt(error)) if receipt else None
            if kept is not None:
                return kept  # a racing request with this key answered first
            raise
        async with tenant_transaction(self.pool, content.tenant_id) as conn:
            stored = await idempotency.claim_one(conn, claim)
            if stored is not None:
                return stored
            created = await q.insert_content(conn, content)
            result = created if created is not None else ContentExists(f"content '{content.id}' already exists")
            if claim is not None and receipt is not None:
                await idempotency.complete(conn, [(claim, *receipt(result))])
        if isinstance(result, KassaError):
            raise result
        return result

    async def update_content(self, content: Content) -> Content:
        """Replace a content's fields; past purchases keep their own copy. Raises
        InvalidRequest, CustomerNotFound (a rights holder), ContentNotFound."""
        check_content(content)
        await self._check_holders_and_accounts(content)
        async with tenant_transaction(self.pool, content.tenant_id) as conn:
            updated = await q.update_content(conn, content)
        # This process prices from the new row at once; the others' purchases priced from the
        # old one are refused by their write and priced again (ppv_lookups).
        self.lookups.forget_content(content.tenant_id, content.id)
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
