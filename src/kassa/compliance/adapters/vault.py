"""Personal data of KYC sealed under the tenant's data key (identity's envelope encryption).

The rings come from identity's per-tenant data keys (`CustomerService.keys`, handed over by
bootstrap): compliance never sees the master key or a wrapped key. Each value is sealed with
associated data naming tenant, verification and field, so a sealed value copied to another row
or column does not open. The search key for document hashes is derived from the tenant's data
key (HMAC with a fixed label), so it is never stored and dies with the data key (crypto-shredding
a tenant also makes its document hashes unmatchable). Rotating a tenant's data key would change
the search key: hashes must then be recomputed, which needs the old key (noted in docs).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kassa.shared.crypto import KeyRing
    from kassa.store.pool import Conn

_SEARCH_LABEL = b"kassa compliance document search key v1"


class TenantRings(Protocol):
    async def ring(self, conn: Conn, tenant_id: str) -> KeyRing: ...


class TenantVault:
    def __init__(self, rings: TenantRings) -> None:
        self._rings = rings

    async def seal(self, conn: Conn, tenant_id: str, purpose: str, plaintext: bytes) -> bytes:
        ring = await self._rings.ring(conn, tenant_id)
        return ring.seal(plaintext, aad=f"compliance:{tenant_id}:{purpose}".encode())

    async def open(self, conn: Conn, tenant_id: str, purpose: str, sealed: bytes) -> bytes:
        ring = await self._rings.ring(conn, tenant_id)
        return ring.open(sealed, aad=f"compliance:{tenant_id}:{purpose}".encode())

    async def search_key(self, conn: Conn, tenant_id: str) -> bytes:
        ring = await self._rings.ring(conn, tenant_id)
        return hmac.new(ring.primary, _SEARCH_LABEL, hashlib.sha256).digest()
