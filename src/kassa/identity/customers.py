"""Customer service: create, read and list customers, their personal data sealed at rest.

Every function is tenant-scoped by its first argument and runs in a tenant-scoped transaction.
Personal data (name, email) leaves this module only inside a `Customer`: never in an event
(`CustomerCreated` carries the id, type and creation time), an error message or a log line,
and never in a stored Idempotency-Key response (the receipt holds the id only; a replay reads
the customer again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.events.outbox import NewEvent, write_events
from kassa.identity.adapters import customer_rows
from kassa.identity.adapters.data_keys import TenantKeys
from kassa.identity.domain.customers import Customer, check_customer
from kassa.identity.errors import CustomerExists, CustomerNotFound
from kassa.store import idempotency
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from kassa.identity.adapters.data_keys import KeyWrapper
    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Pool

__all__ = ["CustomerService"]


class CustomerService:
    def __init__(self, pool: Pool, wrapper: KeyWrapper) -> None:
        self.pool = pool
        self.keys = TenantKeys(wrapper)

    async def create_customer(self, customer: Customer, claim: IdemClaim | None = None) -> Customer | Replay:
        """Create a customer (and its tenant's data key on first use). A replayed
        Idempotency-Key returns the stored receipt: status 201 with the customer id as body, or
        the first attempt's problem. Raises InvalidCustomer, InvalidRequest, CustomerExists,
        IdempotencyKeyReused, IdempotencyKeyInFlight."""
        check_customer(customer)
        async with tenant_transaction(self.pool, customer.tenant_id) as conn:
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            ring = await self.keys.ring(conn, customer.tenant_id)
            created = await customer_rows.insert(conn, ring, customer)
            if created is None:
                error = CustomerExists(f"customer '{customer.id}' already exists")
                if claim is not None:
                    await idempotency.complete(conn, [(claim, error.status, error.code.encode())])
            else:
                data = {"id": created.id, "type": created.type, "created_at": created.created_at}
                event = NewEvent(created.tenant_id, "CustomerCreated", "customer", created.id, data)
                assert created.created_at is not None  # set by the insert
                await write_events(conn, [event], created.created_at)
                if claim is not None:
                    await idempotency.complete(conn, [(claim, 201, created.id.encode())])
        if created is None:
            raise error
        return created

    async def get_customer(self, tenant_id: str, customer_id: str) -> Customer:
        """Raises CustomerNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            ring = await self.keys.ring(conn, tenant_id)
            found = await customer_rows.get(conn, ring, tenant_id, customer_id)
        if found is None:
            raise CustomerNotFound(f"customer '{customer_id}' does not exist")
        return found

    async def require_customer(self, tenant_id: str, customer_id: str) -> None:
        """That the customer exists, without opening its personal data. Raises CustomerNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            if not await customer_rows.exists(conn, tenant_id, customer_id):
                raise CustomerNotFound(f"customer '{customer_id}' does not exist")

    async def list_customers(self, tenant_id: str, after_id: str | None, limit: int) -> list[Customer]:
        """Customers in id order after `after_id` (the cursor), at most `limit`."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            ring = await self.keys.ring(conn, tenant_id)
            return await customer_rows.page(conn, ring, tenant_id, after_id, limit)
