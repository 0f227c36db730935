"""Facts about the identity and payments contexts that tests of other contexts need."""

from __future__ import annotations

# Event types written by customers, wallets, top-ups and withdrawals (issue 8).
PAYMENTS_EVENT_TYPES = (
    "CustomerCreated",
    "WalletCreated",
    "TopupSucceeded",
    "TopupFailed",
    "WithdrawalSucceeded",
    "WithdrawalFailed",
    "WithdrawalReturned",
    "PaymentExceptionRecorded",
)
