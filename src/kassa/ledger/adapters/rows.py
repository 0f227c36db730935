"""Mapping between ledger rows and domain objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kassa.ledger.domain.model import Account, Balance, Transaction, TransactionPosting, Transfer

if TYPE_CHECKING:
    from collections.abc import Iterable

TRANSFER_COLUMNS = (
    "tenant_id, id, debit_account_id, credit_account_id, currency, amount, posted_amount, status,"
    " timeout_s, expires_at, reference, metadata, request_hash, created_at, updated_at"
)
# Columns of `transactions t`; its postings are the five arrays, in index order (migration 0070).
# The posting engine needs the metadata of a transaction it locks: `kassa_product` names the only
# owner that may post or void it (kassa.ledger.domain.transactions).
TRANSACTION_COLUMNS = (
    "t.tenant_id, t.id, t.status, t.timeout_s, t.expires_at, t.reference, t.metadata, t.request_hash,"
    " t.created_at, t.updated_at, t.debit_account_ids, t.credit_account_ids, t.currencies, t.amounts,"
    " t.posted_amounts"
)
ACCOUNT_COLUMNS = (
    "tenant_id, id, currency, normal_balance, allow_negative, metadata, created_at,"
    " debits_posted, credits_posted, debits_pending, credits_pending"
)
# What the posting engine reads of an account it locks: its balances and the rules that check
# them, not its description (metadata, creation time), which no posting reads. A thousand-transfer
# batch locks most accounts of a tenant, and decoding each one's metadata cost more than the rest.
LOCKED_ACCOUNT_COLUMNS = (
    "tenant_id, id, currency, normal_balance, allow_negative,"
    " debits_posted, credits_posted, debits_pending, credits_pending"
)


def transfer_from_row(row: Any) -> Transfer:
    return Transfer(
        tenant_id=row["tenant_id"],
        id=row["id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        currency=row["currency"],
        amount=row["amount"],
        posted_amount=row["posted_amount"],
        status=row["status"],
        timeout_s=row["timeout_s"],
        expires_at=row["expires_at"],
        reference=row["reference"],
        metadata=row["metadata"],
        request_hash=bytes(row["request_hash"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def account_from_row(row: Any) -> Account:
    account = locked_account_from_row(row)
    account.metadata = row["metadata"]
    account.created_at = row["created_at"]
    return account


def locked_account_from_row(row: Any) -> Account:
    """The posting engine's working copy of a locked account (LOCKED_ACCOUNT_COLUMNS): its
    metadata and created_at are left empty, never to be rendered or stored from this copy."""
    return Account(
        tenant_id=row["tenant_id"],
        id=row["id"],
        currency=row["currency"],
        normal_balance=row["normal_balance"],
        allow_negative=row["allow_negative"],
        balance=Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]),
    )


def locked_accounts(rows: Iterable[Any], tenant_at: int, id_at: int, values_at: int) -> dict[tuple[str, str], Account]:
    """`locked_account_from_row` for rows whose tenant and id are at `tenant_at` and `id_at` and
    whose other LOCKED_ACCOUNT_COLUMNS follow each other, in order, from `values_at`: read by
    position, which costs a batch's account rows half of what reading them by name does."""
    found: dict[tuple[str, str], Account] = {}
    end = values_at + 7
    for row in rows:
        tenant, ident = row[tenant_at], row[id_at]
        currency, normal, allow, debits_posted, credits_posted, debits_pending, credits_pending = row[values_at:end]
        balance = Balance(debits_posted, credits_posted, debits_pending, credits_pending)
        found[(tenant, ident)] = Account(tenant, ident, currency, normal, allow, balance)
    return found


def transaction_from_row(row: Any) -> Transaction:
    return Transaction(
        tenant_id=row["tenant_id"],
        id=row["id"],
        postings=tuple(
            TransactionPosting(n, d, c, cur, amt, p)
            for n, (d, c, cur, amt, p) in enumerate(
                zip(
                    row["debit_account_ids"],
                    row["credit_account_ids"],
                    row["currencies"],
                    row["amounts"],
                    row["posted_amounts"],
                    strict=True,
                )
            )
        ),
        status=row["status"],
        timeout_s=row["timeout_s"],
        expires_at=row["expires_at"],
        reference=row["reference"],
        metadata=row["metadata"],
        request_hash=bytes(row["request_hash"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
