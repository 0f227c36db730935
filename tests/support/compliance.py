"""Helpers for compliance tests: a shop whose customers pay through `ComplianceService.pay`."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from kassa.compliance import ComplianceService, Payment
from kassa.compliance.adapters import rows
from kassa.compliance.domain.kyc import Kyc, Tier
from kassa.compliance.domain.model import Standing
from kassa.ledger import CreateTransaction, NewPosting
from kassa.store.tenancy import tenant_transaction
from support.product import open_shop

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.compliance.domain.limits import Direction
    from kassa.store.pool import Pool

PAYEE = "artist"


async def shop_with_customer(pool: Pool, accounts: dict[str, int]) -> str:
    """A tenant whose accounts (funded as given, in USD) all belong to customer `c1`."""
    return await open_shop(pool, accounts)


async def set_standing(
    app_pool: Pool, tenant_id: str, customer_id: str, since: datetime, tier: Tier = 0, country: str | None = "DE"
) -> None:
    kyc = Kyc("verified", tier) if tier else Kyc()
    async with tenant_transaction(app_pool, tenant_id) as conn:
        await rows.save_standing(conn, Standing(tenant_id, customer_id, kyc, None, country, since))


def payment(
    tenant_id: str,
    account: str,
    amount: int,
    customer: str = "c1",
    direction: Direction = "outgoing",
    payee: str = PAYEE,
) -> Payment:
    """`amount` USD from `account` (the customer's) to `payee`, under a fresh transaction id."""
    tx_id = f"pay-{uuid.uuid4().hex[:16]}"
    command = CreateTransaction(
        tenant_id,
        tx_id,
        (NewPosting(account, payee, amount, "USD"),),
        False,
        None,
        None,
        {},
        hashlib.sha256(tx_id.encode()).digest(),
    )
    return Payment(customer, direction, amount, "USD", command)


async def balance(pool: Pool, tenant_id: str, account: str) -> tuple[int, int]:
    """(posted, pending outflow) of a credit-normal account."""
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            "SELECT credits_posted - debits_posted AS posted, debits_pending FROM accounts"
            " WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            account,
        )
    assert row is not None, f"no account {account}"
    return int(row["posted"]), int(row["debits_pending"])


class AuditedCompliance(ComplianceService):
    """The service as a fixture builds it, holding the audit records its audit hook received."""

    audited: list[dict[str, Any]]


__all__ = ["AuditedCompliance", "ComplianceService", "balance", "payment", "set_standing", "shop_with_customer"]


class TestVault:
    """A stand-in for identity's envelope encryption in tests of the KYC flow (NOT encryption:
    a keyed XOR stream, enough to show no plaintext reaches a column). Opening is offered so
    tests can check what was sealed."""

    __test__ = False  # not a pytest test class

    async def seal(self, conn: object, tenant_id: str, purpose: str, plaintext: bytes) -> bytes:
        return b"test:" + _xor(tenant_id + purpose, plaintext)

    def open(self, tenant_id: str, purpose: str, sealed: bytes) -> bytes:
        return _xor(tenant_id + purpose, sealed.removeprefix(b"test:"))

    async def search_key(self, conn: object, tenant_id: str) -> bytes:
        return hashlib.sha256(b"search:" + tenant_id.encode()).digest()


def _xor(key: str, data: bytes) -> bytes:
    stream = b""
    while len(stream) < len(data):
        stream += hashlib.sha256(key.encode() + len(stream).to_bytes(4, "big")).digest()
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


async def verify_customer(pool: Pool, tenant_id: str, customer_id: str, tier: int = 1) -> None:
    """Make a customer created over HTTP KYC-verified at `tier` (test setup: what the KYC
    provider's approval does), so that withdrawals (tier 1) and larger amounts are enabled."""
    async with tenant_transaction(pool, tenant_id) as conn:
        updated = await conn.fetchval(
            "UPDATE compliance_customers SET kyc_status = 'verified', tier = $3, requested_tier = NULL"
            " WHERE tenant_id = $1 AND customer_id = $2 RETURNING customer_id",
            tenant_id,
            customer_id,
            tier,
        )
    assert updated is not None, "the customer was registered with compliance at creation"
