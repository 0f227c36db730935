"""Webhook signing secrets at rest: sealed with the master key, opened only to sign.

Each secret is sealed with associated data naming its endpoint (`webhook-secret:<tenant>:<id>`),
so a sealed secret copied onto another endpoint's row does not open. The current and the
previous secret share that associated data, which lets a rotation move the current secret to
the previous column as it is.

Rows written before migration 0010 hold plaintext in `secret`/`previous_secret`;
`seal_plaintext_secrets` moves them to the sealed columns, and `open_secret` still reads a row
it has not reached yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from kassa.notifications.adapters import Conn
    from kassa.shared.crypto import KeyRing
    from kassa.store.pool import Pool

__all__ = ["StoredSecret", "count_plaintext_secrets", "open_secret", "seal_plaintext_secrets", "seal_secret"]

_SEAL_BATCH_MAX = 500  # rows sealed per transaction by the start-up pass


def _aad(tenant_id: str, endpoint_id: str) -> bytes:
    return f"webhook-secret:{tenant_id}:{endpoint_id}".encode()


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A secret as a row holds it: sealed, or (rows from before migration 0010) plaintext."""

    sealed: bytes | None = None
    legacy: str | None = None

    def __post_init__(self) -> None:
        invariant((self.sealed is None) != (self.legacy is None), "a stored secret has exactly one form")

    def __repr__(self) -> str:
        return "StoredSecret(sealed)" if self.sealed is not None else "StoredSecret(plaintext)"


def seal_secret(keys: KeyRing, tenant_id: str, endpoint_id: str, secret: str) -> bytes:
    return keys.seal(secret.encode(), aad=_aad(tenant_id, endpoint_id))


def open_secret(keys: KeyRing, tenant_id: str, endpoint_id: str, stored: StoredSecret) -> str:
    """The plaintext of a stored secret. Raises kassa.shared.crypto.DecryptionFailed."""
    if stored.sealed is None:
        assert stored.legacy is not None  # narrowing; StoredSecret checks it has one form
        return stored.legacy
    return keys.open(stored.sealed, aad=_aad(tenant_id, endpoint_id)).decode()


async def _seal_batch(conn: Conn, keys: KeyRing) -> int:
    rows = await conn.fetch(
        """SELECT tenant_id, id, secret, previous_secret FROM webhook_endpoints
           WHERE secret IS NOT NULL OR previous_secret IS NOT NULL
           ORDER BY tenant_id, id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        _SEAL_BATCH_MAX,
    )
    for row in rows:
        tenant_id, endpoint_id = row["tenant_id"], row["id"]
        await conn.execute(
            """UPDATE webhook_endpoints
               SET secret_sealed = COALESCE($3, secret_sealed), secret = NULL,
                   previous_secret_sealed = COALESCE($4, previous_secret_sealed), previous_secret = NULL
               WHERE tenant_id = $1 AND id = $2""",
            tenant_id,
            endpoint_id,
            None if row["secret"] is None else seal_secret(keys, tenant_id, endpoint_id, row["secret"]),
            None
            if row["previous_secret"] is None
            else seal_secret(keys, tenant_id, endpoint_id, row["previous_secret"]),
        )
    return len(rows)


async def count_plaintext_secrets(pool: Pool) -> int:
    """Endpoints that still hold a secret in plaintext."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE secret IS NOT NULL OR previous_secret IS NOT NULL"
    )
    return count


async def seal_plaintext_secrets(pool: Pool, keys: KeyRing) -> int:
    """Seal every secret still stored in plaintext (rows from before migration 0010); returns
    how many endpoints were sealed. Runs in bounded transactions and is safe to run from several
    processes at once (rows are locked, and a locked row is left to its holder). It must run
    with a role that sees every tenant's rows (the migration role does)."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            sealed = await _seal_batch(conn, keys)
        total += sealed
        if sealed < _SEAL_BATCH_MAX:
            return total
