"""Wallet service: one wallet per customer and currency, each a ledger account `wallet:<id>`.

A wallet is created in one tenant-scoped transaction that holds the request's Idempotency-Key
and a row lock on the customer: its ledger account (through the ledger's API, which owns
accounts, on this transaction's connection), its row and its `WalletCreated` event. The lock
serializes wallet creations per customer, so a racing second request waits, then sees the
first wallet and answers 409 without creating a ledger account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import uuid_utils

from kassa.events.outbox import NewEvent, write_events
from kassa.identity.errors import CustomerNotFound
from kassa.ledger import Account, Balance
from kassa.payments.accounts import wallet_account
from kassa.payments.adapters import wallet_rows
from kassa.payments.domain.wallets import WALLET_ID_PREFIX, Wallet, wallet_data
from kassa.payments.errors import WalletExists, WalletNotFound
from kassa.shared.errors import KassaError
from kassa.shared.money import currency_exponent
from kassa.store import idempotency
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.ledger import LedgerService
    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Conn, Pool

__all__ = ["WalletService"]


class WalletService:
    def __init__(self, pool: Pool, ledger: LedgerService) -> None:
        self.pool = pool
        self.ledger = ledger

    async def create_wallet(
        self,
        tenant_id: str,
        customer_id: str,
        currency: str,
        claim: IdemClaim | None = None,
        receipt: Callable[[Wallet | KassaError], tuple[int, bytes]] | None = None,
    ) -> Wallet | Replay:
        """Raises InvalidRequest (unknown currency), CustomerNotFound, WalletExists,
        IdempotencyKeyReused, IdempotencyKeyInFlight."""
        currency_exponent(currency)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            result: Wallet | KassaError
            # The customer's row lock serializes wallet creations per customer (see above).
            if not await conn.fetchval(
                "SELECT 1 FROM customers WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE", tenant_id, customer_id
            ):
                result = CustomerNotFound(f"customer '{customer_id}' does not exist")
            elif await wallet_rows.of_customer(conn, tenant_id, customer_id, currency):
                result = WalletExists(f"customer '{customer_id}' already has a {currency} wallet")
            else:
                result = await self._create(conn, tenant_id, customer_id, currency)
            if claim is not None:
                status, body = (receipt or _id_receipt)(result)
                await idempotency.complete(conn, [(claim, status, body)])
        if not isinstance(result, Wallet):
            raise result
        return result

    async def _create(self, conn: Conn, tenant_id: str, customer_id: str, currency: str) -> Wallet | KassaError:
        wallet_id = WALLET_ID_PREFIX + uuid_utils.uuid7().hex
        spec = wallet_account(wallet_id, currency)
        account = Account(
            tenant_id=tenant_id,
            id=spec.id,
            currency=currency,
            normal_balance=spec.normal_balance,
            allow_negative=spec.allow_negative,
            balance=Balance(),
            metadata={"wallet_id": wallet_id, "customer_id": customer_id},
        )
        # On this transaction's connection: waiting for a second pooled connection while this one
        # holds the customer's lock deadlocked a pool busy with concurrent wallet creations.
        created = await self.ledger.insert_account(conn, account)
        if isinstance(created, KassaError):
            return created
        wallet = await wallet_rows.insert(conn, tenant_id, wallet_id, customer_id, currency, spec.id)
        if wallet is None:
            return WalletExists(f"customer '{customer_id}' already has a {currency} wallet")
        event = NewEvent(tenant_id, "WalletCreated", "wallet", wallet.id, wallet_data(wallet))
        await write_events(conn, [event], wallet.created_at)
        return wallet

    async def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet:
        """Raises WalletNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            wallet = await wallet_rows.get(conn, tenant_id, wallet_id)
        if wallet is None:
            raise WalletNotFound(f"wallet '{wallet_id}' does not exist")
        return wallet

    async def wallet_for(self, tenant_id: str, customer_id: str, currency: str) -> Wallet:
        """The customer's wallet in `currency`. Raises WalletNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await wallet_rows.of_customer(conn, tenant_id, customer_id, currency)
        if not found:
            raise WalletNotFound(f"customer '{customer_id}' has no {currency} wallet")
        return found[0]

    async def wallets_of(self, tenant_id: str, customer_id: str) -> list[Wallet]:
        """Every wallet of a customer, by currency (at most one per currency)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await wallet_rows.of_customer(conn, tenant_id, customer_id, None)


def _id_receipt(result: Wallet | KassaError) -> tuple[int, bytes]:
    if isinstance(result, Wallet):
        return 201, result.id.encode()
    return result.status, msgspec.json.encode({"code": result.code})
