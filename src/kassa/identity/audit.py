"""The admin audit log: append-only records of privileged actions, written in the caller's
transaction by `record_audit` (so the action exists exactly when its record does).

Other contexts call `kassa.identity.record_audit(conn, ...)` for their privileged actions (rule
changes, review decisions, KYC overrides, manual ledger adjustments) on the connection of their
own, tenant-scoped transaction. The database refuses UPDATE, DELETE and TRUNCATE of records
(migration 0041). Secrets never reach a record: any value under a key that names a secret is
replaced by "[redacted]" before it is written, however deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.observability.logging import request_id_var
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import audit_value_bytes_max
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.store.pool import Conn, Pool

REDACTED = "[redacted]"
# Key names whose values are secrets (or derived from them) wherever they appear.
_SECRET_KEY = re.compile(r"secret|password|passphrase|token|api_key|private|credential|hash|seed", re.IGNORECASE)
_ACTION = re.compile(r"[a-z_]+(\.[a-z_]+)+")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    id: str
    tenant_id: str
    occurred_at: datetime
    actor_key_id: str | None
    request_id: str | None
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any


def redact(value: Any) -> Any:
    """`value` with every secret-named key's value replaced (dicts and lists, recursively)."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


async def record_audit(
    conn: Conn,
    *,
    tenant_id: str,
    actor_key_id: str | None,
    action: str,
    target_type: str,
    target_id: str,
    before: Any = None,
    after: Any = None,
    request_id: str | None = None,
) -> str:
    """Append one audit record in the caller's transaction (scoped to `tenant_id`); returns its
    id. `action` is dotted lower case (`api_key.created`, `rule.changed`, `review.decided`);
    `request_id` defaults to the current request's. Raises nothing expected: a malformed call is a
    programmer error (invariant), and a failed insert fails the caller's transaction with it."""
    invariant(conn.is_in_transaction(), "an audit record is written in the action's own transaction")
    invariant(_ACTION.fullmatch(action) is not None, "audit actions are dotted lower case")
    shown = [None if v is None else msgspec.json.encode(redact(v)) for v in (before, after)]
    invariant(
        all(v is None or len(v) <= audit_value_bytes_max for v in shown), "audit before/after fit the named limit"
    )
    record_id = "aud_" + new_id().replace("-", "")
    await conn.execute(
        """INSERT INTO audit_log (tenant_id, id, actor_key_id, request_id, action, target_type, target_id,
                                  before, after)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb)""",
        tenant_id,
        record_id,
        actor_key_id,
        request_id if request_id is not None else request_id_var.get(),
        action,
        target_type,
        target_id,
        None if shown[0] is None else shown[0].decode(),
        None if shown[1] is None else shown[1].decode(),
    )
    return record_id


async def list_audit(
    pool: Pool,
    tenant_id: str,
    before_seq: int | None,
    limit: int,
    *,
    action: str | None = None,
    target_id: str | None = None,
) -> list[AuditRecord]:
    """A tenant's records, newest first, older than `before_seq` (a cursor), optionally only one
    action's or one target's."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await conn.fetch(
            """SELECT seq, id, tenant_id, occurred_at, actor_key_id, request_id, action, target_type, target_id,
                      before, after
               FROM audit_log WHERE tenant_id = $1 AND ($2::bigint IS NULL OR seq < $2)
                 AND ($4::text IS NULL OR action = $4) AND ($5::text IS NULL OR target_id = $5)
               ORDER BY seq DESC LIMIT $3""",
            tenant_id,
            before_seq,
            limit,
            action,
            target_id,
        )
    invariant(all(r["tenant_id"] == tenant_id for r in rows), "audit pages hold one tenant's records")
    return [AuditRecord(**dict(r)) for r in rows]


__all__ = ["REDACTED", "AuditRecord", "list_audit", "record_audit", "redact"]
