"""Typed failures of the ledger, each with a stable code.

    KassaError
    ├── InvalidRequest               invalid_request (checked before anything is locked)
    ├── NotFound
    │   ├── AccountNotFound          account_not_found
    │   ├── TransferNotFound         transfer_not_found
    │   └── TransactionNotFound      transaction_not_found
    ├── Conflict
    │   ├── AccountExists            account_exists
    │   ├── TransferExists           transfer_exists
    │   ├── TransactionExists        transaction_exists
    │   └── TransactionManagedByProduct  transaction_managed_by_product
    └── Unprocessable
        ├── AccountsMustBeDifferent  accounts_must_be_different
        ├── CurrencyMismatch         currency_mismatch
        ├── BalanceOverflow          balance_overflow
        ├── InsufficientFunds        insufficient_funds
        ├── TransferNotPending       transfer_not_pending
        ├── TransactionNotPending    transaction_not_pending
        ├── AmountExceedsPending     amount_exceeds_pending
        ├── PostingAmountsMismatch   posting_amounts_mismatch
        └── BatchFailed              batch_failed

Precedence when creating a transfer (checked in this order, first failure wins):
  validation (`domain/validation.py`: amount, currency, pending/timeout, reference, metadata),
  accounts_must_be_different, transfer_exists, account_not_found (debit, then credit),
  currency_mismatch, balance_overflow, insufficient_funds.

Precedence when creating a multi-leg transaction:
  validation (postings count, then each posting in index order: amount, currency; then
  pending/timeout, reference, metadata), accounts_must_be_different (first such posting),
  transaction_exists, then posting by posting in index order: account_not_found (debit, then
  credit), currency_mismatch; then posting by posting in index order against the running
  balances (earlier postings of the same transaction already applied): balance_overflow,
  insufficient_funds.
  transaction_managed_by_product comes in twice: right after validation when the `id` lies in
  a product's reserved namespace (`LedgerService.reserve_ids`: "topup:", "withdrawal-return:",
  ...) and the command is not that product's; and where transaction_exists is checked (before
  it) when the `id` names an existing transaction of a product other than the command's owner.

An error caused by one posting of a transaction carries `extra["posting_index"]` and its detail
starts with `postings[i]: `. Posting a pending transaction checks transaction_not_found,
transaction_managed_by_product, transaction_not_pending (an overdue one is expired here, then
refused), posting_amounts_mismatch (not one amount per posting), then amount_exceeds_pending per
posting. Voiding checks transaction_not_found, transaction_managed_by_product,
transaction_not_pending. So a caller that may not settle a product's transaction changes nothing
at all, not even its overdue expiry (the sweeper's expiry ignores ownership).
"""

from __future__ import annotations

from typing import TypeVar

from kassa.shared.errors import Conflict, KassaError, NotFound, Unprocessable

E = TypeVar("E", bound=KassaError)


def at_posting(error: E, index: int) -> E:
    """Name the posting of a transaction that caused `error` (in its detail and its extras)."""
    error.detail = f"postings[{index}]: {error.detail}"
    error.extra["posting_index"] = index
    return error


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    title = "Transfer not found"


class TransactionNotFound(NotFound):
    code = "transaction_not_found"
    title = "Transaction not found"


class AccountExists(Conflict):
    code = "account_exists"
    title = "An account with this id already exists"


class TransferExists(Conflict):
    code = "transfer_exists"
    title = "A different transfer with this id already exists"


class TransactionExists(Conflict):
    code = "transaction_exists"
    title = "A different transaction with this id already exists"


class TransactionManagedByProduct(Conflict):
    """The transaction belongs to a product (metadata `kassa_product`): only that product posts,
    voids or re-creates it, through its own flow (a top-up's provider callback, a review's
    decision, ...). `extra["product"]` names it."""

    code = "transaction_managed_by_product"
    title = "The transaction is managed by a product"


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


class TransactionNotPending(Unprocessable):
    code = "transaction_not_pending"
    title = "Transaction is not pending"


class AmountExceedsPending(Unprocessable):
    code = "amount_exceeds_pending"
    title = "Amount exceeds the pending amount"


class PostingAmountsMismatch(Unprocessable):
    code = "posting_amounts_mismatch"
    title = "The amounts do not name every posting of the transaction"


class BatchFailed(Unprocessable):
    code = "batch_failed"
    title = "An atomic batch failed; nothing was applied"
