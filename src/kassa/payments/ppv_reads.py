"""The database reads of guarded purchases before their ledger batch, coalesced.

A purchase through the compliance step needs its customer's compliance facts (standing, rules,
limits, today's usage, screening) and, the first time, its wallet account. Read one purchase
at a time that is a transaction of its own per purchase (BEGIN, tenant scope, the reads,
COMMIT): a crowd buying at once paid that for each of them. `PurchaseReads` queues the reads
of concurrent purchases while one read runs and then reads the queued ones together: one
transaction, and per tenant and currency one statement for the wallets not known yet and one
for the facts (kassa.compliance.adapters.rows.payment_facts_many). The facts are what each
purchase's checks decide on; the limits are enforced again atomically in the ledger's
transaction (the guard), so reading them a moment earlier together changes no guarantee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from kassa.payments.coalesce import Coalescer
from kassa.payments.ppv_lookups import _WALLETS  # the same statement as the wallet-only reader
from kassa.shared.limits import ppv_wallet_reads_max
from kassa.store.tenancy import scope

if TYPE_CHECKING:
    from kassa.payments.ppv_lookups import PurchaseLookups
    from kassa.store.pool import Conn, Pool

ReadKey = tuple[str, str, str]  # (tenant, customer, currency)
Read = tuple[str | None, Any]  # (wallet account or None: no wallet, compliance facts)


class FactsMany(Protocol):
    async def __call__(self, conn: Conn, tenant_id: str, customer_ids: list[str], currency: str) -> dict[str, Any]: ...


class PurchaseReads(Coalescer[ReadKey, Read]):
    def __init__(
        self, pool: Pool, lookups: PurchaseLookups, facts_many: FactsMany, reads_max: int = ppv_wallet_reads_max
    ) -> None:
        super().__init__(reads_max)
        self._pool = pool
        self._lookups = lookups
        self._facts_many = facts_many

    async def read(self, tenant_id: str, customer_id: str, currency: str) -> Read:
        """(the customer's wallet account in `currency` or None, its compliance facts)."""
        return await self.get((tenant_id, customer_id, currency))

    async def _read(self, keys: list[ReadKey]) -> dict[ReadKey, Read]:
        groups: dict[tuple[str, str], list[str]] = {}
        for tenant, customer, currency in keys:
            groups.setdefault((tenant, currency), []).append(customer)
        found: dict[ReadKey, Read] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await scope(conn, {k[0] for k in keys})
            for (tenant, currency), customers in groups.items():
                wallets = {c: self._lookups.wallet_account(tenant, c, currency) for c in customers}
                unknown = [c for c, account in wallets.items() if account is None]
                if unknown:
                    for r in await conn.fetch(_WALLETS, tenant, currency, unknown):
                        wallets[r["customer_id"]] = r["account_id"]
                        self._lookups.remember_wallet(tenant, r["customer_id"], currency, r["account_id"])
                facts = await self._facts_many(conn, tenant, customers, currency)
                for customer in customers:
                    found[(tenant, customer, currency)] = (wallets[customer], facts[customer])
        return found
