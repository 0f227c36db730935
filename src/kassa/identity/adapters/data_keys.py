"""Per-tenant data keys for personal data (envelope encryption).

Each tenant's personal data is sealed with its own random AES-256 data key; the data key is
stored in `tenant_data_keys` wrapped by the master key (KASSA_MASTER_KEY_FILE). A `KeyWrapper`
is whatever wraps and unwraps data keys: the master `KeyRing` in a single deployment, or a KMS
adapter in production (AWS KMS `Encrypt`/`Decrypt` or GCP KMS over the 32-byte data key, with
the same associated data as encryption context), so the master key never enters the process.
Rotating the master key re-wraps these rows only; deleting a tenant's row crypto-shreds its
personal data.

Unwrapped keys are cached per process: a read of a customer costs no second round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from kassa.shared.crypto import KeyRing, new_key

if TYPE_CHECKING:
    from kassa.store.pool import Conn

__all__ = ["KeyWrapper", "TenantKeys"]


class KeyWrapper(Protocol):
    """The key-encryption port: `KeyRing` implements it; a KMS adapter can too."""

    def wrap_key(self, data_key: bytes, *, aad: bytes) -> bytes: ...
    def unwrap_key(self, wrapped: bytes, *, aad: bytes) -> bytes: ...


def _aad(tenant_id: str) -> bytes:
    return f"tenant-data-key:{tenant_id}".encode()


class TenantKeys:
    def __init__(self, wrapper: KeyWrapper) -> None:
        self._wrapper = wrapper
        self._rings: dict[str, KeyRing] = {}

    async def ring(self, conn: Conn, tenant_id: str) -> KeyRing:
        """The tenant's data key ring, created on first use. `conn` is in a transaction scoped to
        the tenant. Raises kassa.shared.crypto.DecryptionFailed if the stored key does not unwrap."""
        ring = self._rings.get(tenant_id)
        if ring is not None:
            return ring
        wrapped = await conn.fetchval("SELECT wrapped_key FROM tenant_data_keys WHERE tenant_id = $1", tenant_id)
        if wrapped is None:
            # Two first uses may race: both insert, one wins, both read the winner's key.
            await conn.execute(
                "INSERT INTO tenant_data_keys (tenant_id, wrapped_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                tenant_id,
                self._wrapper.wrap_key(new_key(), aad=_aad(tenant_id)),
            )
            wrapped = await conn.fetchval("SELECT wrapped_key FROM tenant_data_keys WHERE tenant_id = $1", tenant_id)
        ring = KeyRing(self._wrapper.unwrap_key(bytes(wrapped), aad=_aad(tenant_id)))
        self._rings[tenant_id] = ring
        return ring
