"""The admin audit log on real PostgreSQL: key actions are recorded with actor, request id and
before/after in the action's own transaction, never with a secret, and the database refuses to
change or remove a record, whoever asks."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.identity import list_audit, record_audit
from kassa.identity.keys import KeySpec
from kassa.identity.service import IdentityService
from kassa.observability.logging import request_id_var
from kassa.shared.invariants import InvariantViolation
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration


async def test_key_actions_are_audited_with_actor_request_and_no_secret(app_pool: Pool, pool: Pool) -> None:
    identity = IdentityService(app_pool)
    result = await identity.create_tenant(f"audit-{uuid.uuid4().hex[:8]}", None, None, actor="key_platform")
    assert isinstance(result, tuple)
    tenant, first = result
    token = request_id_var.set("req-audit-1")
    try:
        key, issued = await identity.create_key(tenant.id, first.id, KeySpec("ci", ("accounts:read",)))
        new, new_issued, _ = await identity.rotate_key(tenant.id, first.id, key.id, 60, None)
        await identity.revoke_key(tenant.id, first.id, new.id)
    finally:
        request_id_var.reset(token)
    records = await list_audit(app_pool, tenant.id, None, 100)
    assert [(r.action, r.target_id) for r in records] == [
        ("api_key.revoked", new.id),
        ("api_key.created", new.id),
        ("api_key.rotated", key.id),
        ("api_key.created", key.id),
        ("tenant.created", tenant.id),
    ]
    assert {r.actor_key_id for r in records[:4]} == {first.id} and records[4].actor_key_id == "key_platform"
    assert {r.request_id for r in records[:4]} == {"req-audit-1"}
    revoked = records[0]
    assert revoked.before["revoked_at"] is None and revoked.after["revoked_at"] is not None
    assert records[2].after["replaced_by"] == new.id
    # Nothing secret anywhere in the log: neither secret nor its hash.
    dump = str(await pool.fetch("SELECT * FROM audit_log WHERE tenant_id = $1", tenant.id))
    for secret in (first.secret, issued.secret, new_issued.secret):
        # The random part is the last 43 characters (token_urlsafe(32)); it may itself contain
        # "_", so splitting on "_" could leave a one-character fragment found anywhere in the dump.
        assert len(secret) > 43 and secret not in dump and secret[-43:] not in dump
        assert issued.secret_hash.hex() not in dump


async def test_the_database_refuses_to_change_or_remove_audit_records(app_pool: Pool, pool: Pool) -> None:
    result = await IdentityService(app_pool).create_tenant(f"audit-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant = result[0]
    # The application role inside its tenant scope, and the schema owner (BYPASSRLS) alike.
    for statement in (
        "UPDATE audit_log SET action = 'tenant.renamed' WHERE tenant_id = $1",
        "DELETE FROM audit_log WHERE tenant_id = $1",
    ):
        async with tenant_transaction(app_pool, tenant.id) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
                await conn.execute(statement, tenant.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
            await pool.execute(statement, tenant.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
        await pool.execute("TRUNCATE audit_log")
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant.id) == 1


async def test_record_audit_runs_in_the_callers_transaction(app_pool: Pool) -> None:
    result = await IdentityService(app_pool).create_tenant(f"audit-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant = result[0]

    class Boom(Exception):
        pass

    async def rule_changed(conn: Conn) -> None:
        await record_audit(
            conn,
            tenant_id=tenant.id,
            actor_key_id="key_x",
            action="rule.changed",
            target_type="rule",
            target_id="r1",
            after={"threshold": 2, "webhook_secret": "whsec_live"},
        )

    with pytest.raises(Boom):
        async with tenant_transaction(app_pool, tenant.id) as conn:
            await rule_changed(conn)
            raise Boom  # the action fails: its record goes with it
    assert [r.action for r in await list_audit(app_pool, tenant.id, None, 10)] == ["tenant.created"]
    async with tenant_transaction(app_pool, tenant.id) as conn:
        await rule_changed(conn)
    latest = (await list_audit(app_pool, tenant.id, None, 1))[0]
    assert latest.after == {"threshold": 2, "webhook_secret": "[redacted]"}
    async with app_pool.acquire() as conn:
        with pytest.raises(InvariantViolation):
            await record_audit(
                conn, tenant_id=tenant.id, actor_key_id=None, action="x.y", target_type="t", target_id="1"
            )


async def test_audit_pages_follow_the_cursor_without_gaps(app_pool: Pool) -> None:
    identity = IdentityService(app_pool)
    result = await identity.create_tenant(f"audit-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant, first = result
    for n in range(5):
        await identity.create_key(tenant.id, first.id, KeySpec(f"k{n}", ("accounts:read",)))
    seen: list[str] = []
    cursor = None
    while True:
        page = await list_audit(app_pool, tenant.id, cursor, 2)
        if not page:
            break
        seen.extend(r.id for r in page)
        cursor = page[-1].seq
    every = [r.id for r in await list_audit(app_pool, tenant.id, None, 100)]
    assert seen == every and len(every) == 6
