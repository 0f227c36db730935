"""The payments context's service: wallets and platform accounts (this module), top-ups and
withdrawals through a payment provider, and the provider's callbacks.

`PaymentsService` is built once by `kassa.bootstrap`; other contexts and the API reach wallets
through it (`get_wallet`, `wallet_for`) or through `services.wallets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.payments.accounts import PlatformAccounts
from kassa.payments.callbacks import Outcome, handle_callback
from kassa.payments.domain.movements import TOPUP_TRANSACTIONS, WITHDRAWAL_RETURNS, WITHDRAWAL_TRANSACTIONS
from kassa.payments.expiry import MOVEMENT_EXPIRIES
from kassa.payments.movements import MovementService
from kassa.payments.wallets import WalletService
from kassa.shared.limits import pending_topup_timeout_s, pending_withdrawal_timeout_s

if TYPE_CHECKING:
    from kassa.ledger import LedgerService
    from kassa.payments.domain.providers import PaymentProvider
    from kassa.payments.domain.wallets import Wallet
    from kassa.settings import Settings
    from kassa.store.pool import Pool

__all__ = ["PaymentsService"]


class PaymentsService:
    def __init__(
        self,
        pool: Pool,
        ledger: LedgerService,
        providers: dict[str, PaymentProvider] | None = None,
        timeouts_s: tuple[int, int] = (pending_topup_timeout_s, pending_withdrawal_timeout_s),
    ) -> None:
        """`timeouts_s`: how long a top-up and a withdrawal wait for their provider's outcome."""
        self.pool = pool
        self.ledger = ledger
        self.wallets = WalletService(pool, ledger)
        self.accounts = PlatformAccounts(ledger)
        self.providers = providers or {}
        self.movements = MovementService(pool, ledger, self.wallets, self.accounts, self.providers, timeouts_s)
        # Bound here, not left to the wiring: a ledger that expires a top-up's hold without this
        # writer would leave the top-up pending for ever.
        ledger.on_expiry(MOVEMENT_EXPIRIES)
        # A withdrawal's return id is known in advance: reserved, no client can take it first.
        ledger.reserve_ids("topup", TOPUP_TRANSACTIONS)
        ledger.reserve_ids("withdrawal", WITHDRAWAL_TRANSACTIONS, WITHDRAWAL_RETURNS)

    @classmethod
    def build(cls, settings: Settings, pool: Pool, ledger: LedgerService) -> PaymentsService:
        """With the sandbox provider when KASSA_SANDBOX_URL is set (`kassa up` sets it)."""
        providers: dict[str, PaymentProvider] = {}
        if settings.sandbox_url:
            from kassa.payments.adapters.sandbox_client import SandboxProvider

            try:
                secret = settings.sandbox_secret_path.read_text().strip()
            except OSError as exc:
                raise RuntimeError(
                    f"KASSA_SANDBOX_URL is set but the sandbox secret file {settings.sandbox_secret_path} cannot be"
                    f" read ({exc.strerror}); set KASSA_SANDBOX_SECRET_FILE"
                ) from None
            providers["sandbox"] = SandboxProvider(settings.sandbox_url, secret)
        return cls(pool, ledger, providers, (settings.topup_timeout_s, settings.withdrawal_timeout_s))

    async def close(self) -> None:
        """Release the provider clients; the pool is the caller's."""
        for provider in self.providers.values():
            await provider.close()

    async def handle_callback(self, provider: str, body: bytes, signature: str | None) -> Outcome:
        """See `kassa.payments.callbacks.handle_callback` for the checks and errors."""
        return await handle_callback(self.movements, provider, body, signature)

    async def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet:
        """Raises WalletNotFound."""
        return await self.wallets.get_wallet(tenant_id, wallet_id)

    async def wallet_for(self, tenant_id: str, customer_id: str, currency: str) -> Wallet:
        """Raises WalletNotFound."""
        return await self.wallets.wallet_for(tenant_id, customer_id, currency)
