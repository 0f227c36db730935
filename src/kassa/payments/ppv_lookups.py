"""What pricing a purchase reads, kept per process: contents and wallet accounts.

A purchase in a live event should cost the database nothing before its ledger batch, so the
process keeps the content it prices from and the customer's wallet account:
- a wallet never changes its account once created (one per customer and currency, never
  deleted), so an entry is valid forever; only wallets found are kept (one may be created later);
- a content may change: this process drops its entry when it updates the content, and a
  purchase priced from an entry another process made stale is refused by its own write (the
  price, fee, split and access are compared with the content row in the ledger's transaction,
  migration 0061). The service then drops the entry and prices again, so a stale entry costs
  one refused attempt and can never charge an outdated price.
Both are bounded LRUs. A wallet not yet known is read by `WalletReader`, which coalesces the
lookups of concurrent purchases: while one read is running, the next ones queue and then go
together in one statement (a crowd of first purchases costs a few reads, not one each).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, TypeVar

from kassa.payments.coalesce import Coalescer
from kassa.shared.limits import ppv_content_cache_entries_max, ppv_wallet_cache_entries_max, ppv_wallet_reads_max
from kassa.store.tenancy import scope

if TYPE_CHECKING:
    from kassa.payments.domain.content import Content
    from kassa.store.pool import Pool

WalletKey = tuple[str, str, str]  # (tenant, customer, currency)
# Per tenant and currency (a crowd has one of each): an index scan of the (tenant, customer,
# currency) key for the customers; joining to an unnest of keys let the planner scan instead.
_WALLETS = (
    "SELECT customer_id, account_id FROM wallets"
    " WHERE tenant_id = $1 AND currency = $2 AND customer_id = ANY($3::text[])"
)


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, entries_max: int) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._entries_max = entries_max

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class PurchaseLookups:
    def __init__(
        self, contents_max: int = ppv_content_cache_entries_max, wallets_max: int = ppv_wallet_cache_entries_max
    ) -> None:
        self.contents: _Lru[tuple[str, str], Content] = _Lru(contents_max)
        self.wallets: _Lru[tuple[str, str, str], str] = _Lru(wallets_max)

    def content(self, tenant_id: str, content_id: str) -> Content | None:
        return self.contents.get((tenant_id, content_id))

    def remember_content(self, content: Content) -> None:
        self.contents.put((content.tenant_id, content.id), content)

    def forget_content(self, tenant_id: str, content_id: str) -> None:
        self.contents.pop((tenant_id, content_id))

    def wallet_account(self, tenant_id: str, customer_id: str, currency: str) -> str | None:
        return self.wallets.get((tenant_id, customer_id, currency))

    def remember_wallet(self, tenant_id: str, customer_id: str, currency: str, account_id: str) -> None:
        self.wallets.put((tenant_id, customer_id, currency), account_id)


class WalletReader(Coalescer[WalletKey, str | None]):
    """Reads wallet accounts for purchases, coalescing concurrent lookups into one statement."""

    def __init__(self, pool: Pool, lookups: PurchaseLookups, reads_max: int = ppv_wallet_reads_max) -> None:
        super().__init__(reads_max)
        self._pool = pool
        self._lookups = lookups

    async def account(self, tenant_id: str, customer_id: str, currency: str) -> str | None:
        """The account of the customer's wallet in `currency`, or None when it has none."""
        found = self._lookups.wallet_account(tenant_id, customer_id, currency)
        if found is not None:
            return found
        return await self.get((tenant_id, customer_id, currency))

    def _missing(self) -> str | None:
        return None

    async def _read(self, keys: list[WalletKey]) -> dict[WalletKey, str | None]:
        groups: dict[tuple[str, str], list[str]] = {}
        for tenant, customer, currency in keys:
            groups.setdefault((tenant, currency), []).append(customer)
        found: dict[WalletKey, str | None] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await scope(conn, {k[0] for k in keys})
            for (tenant, currency), customers in groups.items():
                for r in await conn.fetch(_WALLETS, tenant, currency, customers):
                    found[(tenant, r["customer_id"], currency)] = r["account_id"]
                    self._lookups.remember_wallet(tenant, r["customer_id"], currency, r["account_id"])
        return found
