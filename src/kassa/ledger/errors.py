"""Typed failures of the ledger, each with a stable code.

    KassaError
    ├── NotFound
    │   ├── AccountNotFound          account_not_found
    │   └── TransferNotFound         transfer_not_found
    ├── Conflict
    │   ├── AccountExists            account_exists
    │   └── TransferExists           transfer_exists
    └── Unprocessable
        ├── AccountsMustBeDifferent  accounts_must_be_different
        ├── CurrencyMismatch         currency_mismatch
        ├── BalanceOverflow          balance_overflow
        ├── InsufficientFunds        insufficient_funds
        ├── TransferNotPending       transfer_not_pending
        └── AmountExceedsPending     amount_exceeds_pending

Precedence when creating a transfer (checked in this order, first failure wins):
accounts_must_be_different, transfer_exists, account_not_found (debit, then credit),
currency_mismatch, balance_overflow, insufficient_funds.
"""

from __future__ import annotations

from kassa.shared.errors import Conflict, NotFound, Unprocessable


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    title = "Transfer not found"


class AccountExists(Conflict):
    code = "account_exists"
    title = "An account with this id already exists"


class TransferExists(Conflict):
    code = "transfer_exists"
    title = "A different transfer with this id already exists"


class AccountsMustBeDifferent(Unprocessable):
    code = "accounts_must_be_different"
    title = "Debit and credit accounts must be different"


class CurrencyMismatch(Unprocessable):
    code = "currency_mismatch"
    title = "Currency does not match the accounts"


class BalanceOverflow(Unprocessable):
    code = "balance_overflow"
    title = "The transfer would overflow an account balance"


class InsufficientFunds(Unprocessable):
    code = "insufficient_funds"
    title = "Insufficient funds"


class TransferNotPending(Unprocessable):
    code = "transfer_not_pending"
    title = "Transfer is not pending"


class AmountExceedsPending(Unprocessable):
    code = "amount_exceeds_pending"
    title = "Amount exceeds the pending amount"


class BatchFailed(Unprocessable):
    code = "batch_failed"
    title = "An atomic batch failed; nothing was applied"
