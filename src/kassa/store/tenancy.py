"""Tenant scoping of database work, for PostgreSQL row-level security.

Every tenant table's policy admits a row only when its `tenant_id` is one of the tenants named
in the transaction-local setting `kassa.tenant_id` (a comma-separated list; one tenant for
almost everything, several for a coalesced ledger batch that mixes tenants). A transaction
that never calls `scope()` sees no tenant row at all, so a query that forgot its tenant in the
WHERE clause still cannot read another tenant's data.

The setting is transaction-local (`set_config(..., true)`): it can never leak to the next user
of a pooled connection. Code that reads or writes tenant rows therefore always runs inside a
transaction, opened with `tenant_transaction()` or scoped with `scope()` right after BEGIN.

The policies themselves are applied by the migration runner (`store.rls`) to every table with a
`tenant_id` column. What is cross-tenant by nature does not widen this scope; it takes one of
two explicit doors instead (docs/database.md): narrow SECURITY DEFINER functions for the API
process (authentication by key hash, the hold-expiry scan, the idempotency purge), and the
`kassa_worker` role for the event runtime, which sees every tenant's rows of the event and
notification tables only. A scope is never a wildcard: there is no value that means "all".
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from kassa.store.pool import Conn, Pool

TENANT_SETTING = "kassa.tenant_id"
_SCOPE_SQL = f"SELECT set_config('{TENANT_SETTING}', $1, true)"


def tenant_list(tenant_ids: Iterable[str]) -> str:
    """The setting's value: sorted, de-duplicated tenant ids joined by commas."""
    ids = sorted(set(tenant_ids))
    invariant(all(t and "," not in t for t in ids), "tenant ids are non-empty and contain no comma")
    return ",".join(ids)


async def scope(conn: Conn, tenant_ids: Iterable[str]) -> None:
    """Make the rows of `tenant_ids`, and only those, visible for the rest of the current
    transaction. Must be called inside a transaction (the setting is transaction-local)."""
    invariant(conn.is_in_transaction(), "tenant scope is set inside a transaction")
    await conn.execute(_SCOPE_SQL, tenant_list(tenant_ids))


@asynccontextmanager
async def tenant_transaction(pool: Pool, tenant_id: str) -> AsyncIterator[Conn]:
    """A pooled connection in a transaction scoped to one tenant."""
    async with pool.acquire() as conn, conn.transaction():
        await scope(conn, [tenant_id])
        yield conn


__all__ = ["TENANT_SETTING", "scope", "tenant_list", "tenant_transaction"]
