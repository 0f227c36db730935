"""Top-ups and withdrawals: a pending ledger transaction written together with its row (one
ProductWrite in the ledger's coalesced transaction), then the request handed to the provider.

The provider answers later through a callback (`kassa.payments.callbacks`). If the provider
cannot be reached at hand-over (after `provider_request_attempts_max` tries with the same
idempotency key), the transaction is voided and the row marked failed with
`provider_unavailable`: no money is held for a request the provider may never have seen. Should
the provider have taken it after all, its success callback is then recorded as an exception for
an operator, never applied silently.

A replayed Idempotency-Key returns the stored receipt (the id): the API reads the current row.
The card number goes to the provider and nowhere else; only its last four digits are stored.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import uuid_utils

from kassa.ledger import CreateTransaction, CurrencyMismatch, NewPosting, ProductWrite, Replay, VoidTransaction
from kassa.payments.accounts import clearing_account
from kassa.payments.adapters import movement_rows
from kassa.payments.adapters.movement_rows import PendingInserts, Settlement, Settlements
from kassa.payments.domain.instruments import check_account_number, check_card
from kassa.payments.domain.movements import (
    TOPUP_ID_PREFIX,
    WITHDRAWAL_ID_PREFIX,
    Topup,
    Withdrawal,
    owner_of,
    topup_transaction_id,
    withdrawal_transaction_id,
)
from kassa.payments.domain.providers import ChargeRequest, PayoutRequest
from kassa.payments.errors import ProviderNotFound, ProviderUnavailable, TopupNotFound, WithdrawalNotFound
from kassa.shared.clock import utcnow
from kassa.shared.limits import pending_topup_timeout_s, pending_withdrawal_timeout_s
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from asyncpg import Record

    from kassa.ledger import LedgerService, Receipt
    from kassa.payments.accounts import PlatformAccounts
    from kassa.payments.domain.providers import PaymentProvider
    from kassa.payments.movement_reviews import MovementCompliance
    from kassa.payments.wallets import WalletService
    from kassa.store.idempotency import IdemClaim
    from kassa.store.pool import Pool

log = logging.getLogger("kassa.payments")
TOPUP_INSERTS = PendingInserts("topups")
WITHDRAWAL_INSERTS = PendingInserts("withdrawals")
SETTLEMENTS = Settlements()
DEFAULT_PROVIDER = "sandbox"


class MovementService:
    def __init__(
        self,
        pool: Pool,
        ledger: LedgerService,
        wallets: WalletService,
        accounts: PlatformAccounts,
        providers: dict[str, PaymentProvider],
        timeouts_s: tuple[int, int] = (pending_topup_timeout_s, pending_withdrawal_timeout_s),
    ) -> None:
        self.pool = pool
        # How long a top-up and a withdrawal wait for the provider's outcome before their hold
        # expires and they fail with `provider_timeout` (kassa.payments.expiry).
        self.topup_timeout_s, self.withdrawal_timeout_s = timeouts_s
        self.ledger = ledger
        self.wallets = wallets
        self.accounts = accounts
        self.providers = providers
        # The compliance step (movement_reviews.py), wired by bootstrap; None runs without it.
        self.compliance: MovementCompliance | None = None

    def provider(self, name: str) -> PaymentProvider:
        """Raises ProviderNotFound."""
        found = self.providers.get(name)
        if found is None:
            raise ProviderNotFound(f"payment provider '{name}' is not configured")
        return found

    async def create_topup(
        self,
        tenant_id: str,
        wallet_id: str,
        amount: int,
        currency: str,
        card_number: str,
        claim: IdemClaim | None = None,
        receipt: Receipt | None = None,
    ) -> Topup | Replay:
        """Hold a top-up as pending and charge the card. Raises InvalidPaymentMethod,
        WalletNotFound, CurrencyMismatch, ProviderNotFound, IdempotencyKeyReused,
        IdempotencyKeyInFlight, ServiceUnavailable."""
        last4 = check_card(card_number)
        wallet = await self.wallets.get_wallet(tenant_id, wallet_id)
        if wallet.currency != currency:
            raise CurrencyMismatch(f"wallet '{wallet_id}' is in {wallet.currency}, not {currency}")
        provider = self.provider(DEFAULT_PROVIDER)
        clearing = await self.accounts.ensure(tenant_id, clearing_account(provider.name, currency))
        topup_id = TOPUP_ID_PREFIX + uuid_utils.uuid7().hex
        now = utcnow()
        topup = Topup(
            tenant_id, topup_id, wallet.id, amount, currency, provider.name, topup_transaction_id(topup_id), last4,
            "pending", None, None, now, now,
        )  # fmt: skip
        posting = NewPosting(clearing, wallet.account_id, amount, currency)
        replay = await self._hold(topup, posting, self.topup_timeout_s, claim, receipt, wallet.customer_id, None)
        if replay is not None:
            return replay  # an earlier request with this key: its receipt
        # Charged at once even when held for review: the card number is not kept, and the wallet
        # is credited only once both the charge and the approval happened (movement_reviews.py).
        await self._hand_over(topup, provider.charge(ChargeRequest(tenant_id, topup_id, amount, currency, card_number)))
        return await self.get_topup(tenant_id, topup_id)

    async def create_withdrawal(
        self,
        tenant_id: str,
        wallet_id: str,
        amount: int,
        account_number: str,
        claim: IdemClaim | None = None,
        receipt: Receipt | None = None,
    ) -> Withdrawal | Replay:
        """Hold the amount on the wallet and request a payout. Raises InvalidDestination,
        WalletNotFound, InsufficientFunds, ProviderNotFound, IdempotencyKeyReused,
        IdempotencyKeyInFlight, ServiceUnavailable."""
        last4 = check_account_number(account_number)
        wallet = await self.wallets.get_wallet(tenant_id, wallet_id)
        provider = self.provider(DEFAULT_PROVIDER)
        clearing = await self.accounts.ensure(tenant_id, clearing_account(provider.name, wallet.currency))
        withdrawal_id = WITHDRAWAL_ID_PREFIX + uuid_utils.uuid7().hex
        now = utcnow()
        withdrawal = Withdrawal(
            tenant_id, withdrawal_id, wallet.id, amount, wallet.currency, provider.name,
            withdrawal_transaction_id(withdrawal_id), None, last4, "pending", None, None, now, now,
        )  # fmt: skip
        posting = NewPosting(wallet.account_id, clearing, amount, wallet.currency)
        replay = await self._hold(
            withdrawal, posting, self.withdrawal_timeout_s, claim, receipt, wallet.customer_id, account_number
        )
        if replay is not None:
            return replay
        held = await self.get_withdrawal(tenant_id, withdrawal_id)
        if held.review_status == "open":
            return held  # the payout is requested when a reviewer approves (movement_reviews.py)
        await self.pay_out(held, account_number)
        return await self.get_withdrawal(tenant_id, withdrawal_id)

    async def pay_out(self, withdrawal: Withdrawal, account_number: str) -> None:
        """Hand a held withdrawal's payout to its provider."""
        request = PayoutRequest(
            withdrawal.tenant_id, withdrawal.id, withdrawal.amount, withdrawal.currency, account_number
        )
        await self._hand_over(withdrawal, self.provider(withdrawal.provider).payout(request))

    async def resume_topup(self, tenant_id: str, topup_id: str, card_number: str) -> None:
        """After an Idempotency-Key replay: hand a top-up to the provider again if it is still
        pending and the provider never confirmed taking it (the first request died between its
        commit and the call). Safe to repeat: the provider is idempotent by the top-up id."""
        topup = await self.get_topup(tenant_id, topup_id)
        if topup.status == "pending" and topup.provider_object_id is None:
            request = ChargeRequest(tenant_id, topup.id, topup.amount, topup.currency, card_number)
            await self._hand_over(topup, self.provider(topup.provider).charge(request))

    async def resume_withdrawal(self, tenant_id: str, withdrawal_id: str, account_number: str) -> None:
        """As `resume_topup`, for a withdrawal's payout."""
        withdrawal = await self.get_withdrawal(tenant_id, withdrawal_id)
        held = withdrawal.review_status == "open"  # its payout waits for the reviewer
        if withdrawal.status == "pending" and withdrawal.provider_object_id is None and not held:
            request = PayoutRequest(tenant_id, withdrawal.id, withdrawal.amount, withdrawal.currency, account_number)
            await self._hand_over(withdrawal, self.provider(withdrawal.provider).payout(request))

    async def _hold(
        self,
        item: Topup | Withdrawal,
        posting: NewPosting,
        timeout_s: int,
        claim: IdemClaim | None,
        receipt: Receipt | None,
        customer_id: str | None = None,
        destination: str | None = None,
    ) -> Replay | None:
        """The pending transaction and the item's row, in one ledger transaction, through the
        compliance guard when it is wired (capability, limits, rules, a review hold); the receipt
        of an earlier request instead when the Idempotency-Key was used. Raises
        CapabilityDisabled, LimitExceeded, BlockedByPolicy besides the ledger's errors."""
        kind, writer = owner_of(item), TOPUP_INSERTS if isinstance(item, Topup) else WITHDRAWAL_INSERTS
        command = CreateTransaction(
            tenant_id=item.tenant_id,
            id=item.transaction_id,
            postings=(posting,),
            pending=True,
            timeout_s=timeout_s,
            reference=item.id,
            metadata={f"{kind}_id": item.id, "wallet_id": item.wallet_id},
            request_hash=hashlib.sha256(item.transaction_id.encode()).digest(),
            generated_id=True,
            owner=kind,  # only this product's flows post or void it (callbacks, reviews, _give_up)
        )
        if self.compliance is None:
            product: ProductWrite[Any] = ProductWrite(writer, item)
            done = await self.ledger.execute(command, claim=claim, receipt=receipt, product=product)
        else:
            assert customer_id is not None  # the wallet's owner: whose limits and rules apply
            done = await self.compliance.hold(item, customer_id, command, writer, destination, claim, receipt)
        return done if isinstance(done, Replay) else None

    async def _hand_over(self, item: Topup | Withdrawal, call: Awaitable[str]) -> None:
        """Await the provider call; note its object id, or give up when it cannot be reached."""
        try:
            object_id = await call
        except ProviderUnavailable:
            await self._give_up(item)
        else:
            table = "topups" if isinstance(item, Topup) else "withdrawals"
            await self._note_object(table, item.tenant_id, item.id, object_id)

    async def _give_up(self, item: Topup | Withdrawal) -> None:
        """The provider never took the request: release the hold, mark the row failed."""
        log.warning("payment provider unreachable; request failed", extra={"id": item.id, "provider": item.provider})
        settlement = Settlement(item, "failed", "provider_unavailable", None)
        await self.ledger.execute(
            VoidTransaction(item.tenant_id, item.transaction_id, owner=owner_of(item)),
            product=ProductWrite(SETTLEMENTS, settlement),
        )

    async def _note_object(self, table: str, tenant_id: str, item_id: str, object_id: str) -> None:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await movement_rows.set_provider_object(conn, table, tenant_id, item_id, object_id)

    async def get_topup(self, tenant_id: str, topup_id: str) -> Topup:
        """Raises TopupNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await movement_rows.get_topup(conn, tenant_id, topup_id)
        if found is None:
            raise TopupNotFound(f"top-up '{topup_id}' does not exist")
        return found

    async def get_withdrawal(self, tenant_id: str, withdrawal_id: str) -> Withdrawal:
        """Raises WithdrawalNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await movement_rows.get_withdrawal(conn, tenant_id, withdrawal_id)
        if found is None:
            raise WithdrawalNotFound(f"withdrawal '{withdrawal_id}' does not exist")
        return found

    async def list_exceptions(self, tenant_id: str, before_seq: int | None, limit: int) -> list[Record]:
        """Payment exceptions newest first, each row with its `seq` (the cursor)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await movement_rows.list_exceptions(conn, tenant_id, before_seq, limit)
