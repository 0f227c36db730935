"""Mapping between ledger rows and domain objects."""

from __future__ import annotations

from typing import Any

from kassa.ledger.domain.model import Account, Balance, Transfer

TRANSFER_COLUMNS = (
    "tenant_id, id, debit_account_id, credit_account_id, currency, amount, posted_amount, status,"
    " timeout_s, expires_at, reference, metadata, request_hash, created_at, updated_at"
)
ACCOUNT_COLUMNS = (
    "tenant_id, id, currency, normal_balance, allow_negative, metadata, created_at,"
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
    return Account(
        tenant_id=row["tenant_id"],
        id=row["id"],
        currency=row["currency"],
        normal_balance=row["normal_balance"],
        allow_negative=row["allow_negative"],
        balance=Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]),
        metadata=row["metadata"],
        created_at=row["created_at"],
    )
