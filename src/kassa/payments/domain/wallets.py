"""Wallets: one per customer and currency, each backed by the ledger account `wallet:<id>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

WALLET_ID_PREFIX = "wal_"


@dataclass(frozen=True, slots=True)
class Wallet:
    tenant_id: str
    id: str
    customer_id: str
    currency: str
    account_id: str
    created_at: datetime


def wallet_data(wallet: Wallet) -> dict[str, object]:
    """A wallet's event data: ids only (the customer's personal data never goes into events)."""
    return {
        "id": wallet.id,
        "customer_id": wallet.customer_id,
        "currency": wallet.currency,
        "account_id": wallet.account_id,
        "created_at": wallet.created_at,
    }
