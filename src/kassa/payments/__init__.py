"""The payments context: wallets, platform accounts, top-ups and withdrawals through payment
providers (and, from other modules, pay-per-view purchases, splits and refunds).

Other contexts import from here, never from its modules. Ledger account names are in
`kassa.payments.accounts` (re-exported below).
"""

from kassa.payments.accounts import (
    AccountSpec,
    PlatformAccounts,
    clearing_account,
    fees_account,
    payable_account,
    refunds_account,
    wallet_account,
)
from kassa.payments.domain.movements import Topup, Withdrawal
from kassa.payments.domain.wallets import Wallet
from kassa.payments.errors import WalletExists, WalletNotFound
from kassa.payments.service import PaymentsService
from kassa.payments.wallets import WalletService

__all__ = [
    "AccountSpec",
    "PaymentsService",
    "PlatformAccounts",
    "Topup",
    "Wallet",
    "WalletExists",
    "WalletNotFound",
    "WalletService",
    "Withdrawal",
    "clearing_account",
    "fees_account",
    "payable_account",
    "refunds_account",
    "wallet_account",
]
