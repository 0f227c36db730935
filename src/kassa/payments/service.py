"""The payments context's service: wallets and platform accounts (this module), top-ups and
withdrawals through a payment provider, and the provider's callbacks.

`PaymentsService` is built once by `kassa.bootstrap`; other contexts and the API reach wallets
through it (`get_wallet`, `wallet_for`) or through `services.wallets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.payments.accounts import PlatformAccounts
from kassa.payments.wallets import WalletService

if TYPE_CHECKING:
    from kassa.ledger import LedgerService
    from kassa.payments.domain.wallets import Wallet
    from kassa.settings import Settings
    from kassa.store.pool import Pool

__all__ = ["PaymentsService"]


class PaymentsService:
    def __init__(self, pool: Pool, ledger: LedgerService) -> None:
        self.pool = pool
        self.ledger = ledger
        self.wallets = WalletService(pool, ledger)
        self.accounts = PlatformAccounts(ledger)

    @classmethod
    def build(cls, settings: Settings, pool: Pool, ledger: LedgerService) -> PaymentsService:
        return cls(pool, ledger)

    async def close(self) -> None:
        """Release what the service holds (provider clients); the pool is the caller's."""

    async def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet:
        """Raises WalletNotFound."""
        return await self.wallets.get_wallet(tenant_id, wallet_id)

    async def wallet_for(self, tenant_id: str, customer_id: str, currency: str) -> Wallet:
        """Raises WalletNotFound."""
        return await self.wallets.wallet_for(tenant_id, customer_id, currency)
