"""Row-level security on real PostgreSQL: the application role sees only the rows of the tenants
its transaction is scoped to, can neither run DDL nor escape the policies, and every tenant table
(including ones added later) is covered."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.identity.service import IdentityService
from kassa.ledger.domain.model import Account, Balance
from kassa.ledger.service import LedgerService
from kassa.notifications.service import EndpointWithSecret, NotificationService
from kassa.shared.crypto import KeyRing, new_key
from kassa.store import roles
from kassa.store.rls import TENANT_POLICY, secure_schema
from kassa.store.tenancy import scope, tenant_transaction

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
_KEYS = KeyRing(new_key())  # the master key that seals webhook secrets in these tests

_TENANT_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND (c.relname = 'tenants' OR EXISTS (SELECT FROM pg_attribute a
       WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
ORDER BY 1
"""


def _render(_: object) -> tuple[int, bytes]:
    return 201, b"{}"


async def _tenant_with_rows(app_pool: Pool) -> str:
    """A tenant created through the services as the application role, with rows in the ledger,
    identity, outbox, idempotency and webhook tables."""
    identity = IdentityService(app_pool)
    tenant, _key = await identity.create_tenant(f"rls-{uuid.uuid4().hex[:6]}", None, None)
    ledger = LedgerService(app_pool, batcher=None)  # type: ignore[arg-type]  # no transfers here: nothing is batched
    from kassa.store.idempotency import IdemClaim

    claim = IdemClaim(tenant.id, "k-" + uuid.uuid4().hex, b"h")
    await ledger.create_account(Account(tenant.id, "wallet", "EUR", "credit", False, Balance()), claim, _render)
    await NotificationService(app_pool, _KEYS).create_endpoint(tenant.id, "https://example.com/hook", ["*"])
    return tenant.id


async def test_the_application_role_without_a_tenant_scope_sees_no_row_of_any_tenant_table(
    app_pool: Pool, pool: Pool
) -> None:
    tenant = await _tenant_with_rows(app_pool)
    tables = [r["relname"] for r in await pool.fetch(_TENANT_TABLES)]
    assert {"accounts", "api_keys", "idempotency_keys", "outbox", "tenants", "webhook_endpoints"} <= set(tables)
    for table in tables:
        # The rows exist (the owner sees them) ...
        if table in ("accounts", "api_keys", "idempotency_keys", "outbox", "webhook_endpoints"):
            assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant) >= 1, table
        # ... and the application role, outside a scope (autocommit or a plain transaction), sees none.
        assert await app_pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        async with app_pool.acquire() as conn, conn.transaction():
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_a_query_that_forgot_its_tenant_filter_still_reads_only_its_own_tenant(app_pool: Pool) -> None:
    mine, other = await _tenant_with_rows(app_pool), await _tenant_with_rows(app_pool)
    # A route whose WHERE clause forgot the tenant: it lists everything it can see.
    async with tenant_transaction(app_pool, mine) as conn:
        for table in ("accounts", "api_keys", "outbox", "webhook_endpoints", "idempotency_keys"):
            seen = {r["tenant_id"] for r in await conn.fetch(f"SELECT tenant_id FROM {table}")}
            assert seen == {mine}, table
        assert {r["id"] for r in await conn.fetch("SELECT id FROM tenants")} == {mine}
        # Knowing the other tenant's exact ids does not help either.
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE tenant_id = $1", other) == 0
        # Nor can it write into, or change, another tenant's rows.
        assert await conn.execute("UPDATE accounts SET metadata = '{}' WHERE tenant_id = $1", other) == "UPDATE 0"
        assert await conn.execute("DELETE FROM webhook_endpoints WHERE tenant_id = $1", other) == "DELETE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO accounts (tenant_id, id, currency, normal_balance) VALUES ($1, 'x', 'EUR', 'credit')",
                    other,
                )
    # A scope of several tenants (a coalesced ledger batch) sees exactly those.
    async with app_pool.acquire() as conn, conn.transaction():
        await scope(conn, [mine, other])
        seen = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM accounts")}
        assert seen == {mine, other}


async def test_the_scope_is_transaction_local_and_never_leaks_to_the_next_user_of_a_connection(
    app_pool: Pool,
) -> None:
    tenant = await _tenant_with_rows(app_pool)
    async with app_pool.acquire() as conn:
        async with conn.transaction():
            await scope(conn, [tenant])
            assert await conn.fetchval("SELECT count(*) FROM accounts") == 1
        assert await conn.fetchval("SELECT count(*) FROM accounts") == 0


async def test_the_application_role_is_neither_superuser_nor_owner_nor_bypassrls_and_cannot_run_ddl(
    app_pool: Pool, pool: Pool
) -> None:
    row = await app_pool.fetchrow(
        "SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert row is not None and row["name"] == roles.APP
    assert not (row["rolsuper"] or row["rolbypassrls"] or row["rolcreaterole"] or row["rolcreatedb"])
    owned = await pool.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relowner = $1::regrole",
        roles.APP,
    )
    assert owned == 0
    ddl = [
        "CREATE TABLE app_made (id int)",
        "ALTER TABLE accounts ADD COLUMN sneaky int",
        "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY kassa_tenant ON accounts",
        "CREATE POLICY everything ON accounts USING (true)",
        "DROP TABLE outbox",
        "TRUNCATE idempotency_keys",
        "CREATE FUNCTION app_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "SET ROLE kassa_owner",
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'x', 'x')",
    ]
    for statement in ddl:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_pool.execute(statement)


async def test_every_tenant_table_has_forced_row_level_security_and_a_tenant_policy(pool: Pool) -> None:
    rows = await pool.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1) AS has_policy"
        " FROM pg_class c WHERE c.relname = ANY($2::text[])",
        TENANT_POLICY,
        [r["relname"] for r in await pool.fetch(_TENANT_TABLES)],
    )
    missing = [r["relname"] for r in rows if not (r["relrowsecurity"] and r["relforcerowsecurity"] and r["has_policy"])]
    assert rows and missing == []


async def test_a_table_added_by_a_later_migration_is_secured_and_usable_by_the_app_without_its_help(
    pg_url: str, app_pool: Pool, pool: Pool
) -> None:
    table = f"rls_probe_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_url)
    try:
        # What a migration of another context would do: a plain table, no policy, no grant.
        await conn.execute(f"CREATE TABLE {table} (tenant_id text NOT NULL, id text NOT NULL)")
        secured = await secure_schema(conn)
        assert table in secured
        assert await secure_schema(conn) == []  # idempotent
        async with tenant_transaction(app_pool, "t-probe") as app:
            await app.execute(f"INSERT INTO {table} VALUES ('t-probe', 'a')")
        await pool.execute(f"INSERT INTO {table} VALUES ('t-other', 'b')")
        async with tenant_transaction(app_pool, "t-probe") as app:
            assert [r["id"] for r in await app.fetch(f"SELECT id FROM {table}")] == ["a"]
        assert await app_pool.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def test_authentication_finds_a_key_without_the_application_reading_api_keys(app_pool: Pool) -> None:
    identity = IdentityService(app_pool)
    tenant, key = await identity.create_tenant("auth-probe", None, None)
    principal = await identity.authenticate(key.secret)
    assert (principal.tenant_id, principal.role, principal.key_id) == (tenant.id, "tenant", key.id)
    # The door returns the principal of one hash only; the table itself stays closed.
    assert await app_pool.fetchval("SELECT count(*) FROM api_keys") == 0
    assert await app_pool.fetchval("SELECT count(*) FROM kassa_authenticate($1)", b"\x00" * 32) == 0


async def test_the_worker_role_sees_every_tenant_of_the_event_tables_and_nothing_of_the_ledger(
    app_pool: Pool, worker_pool: Pool
) -> None:
    first, second = await _tenant_with_rows(app_pool), await _tenant_with_rows(app_pool)
    seen = {r["tenant_id"] for r in await worker_pool.fetch("SELECT DISTINCT tenant_id FROM outbox")}
    assert {first, second} <= seen
    assert {first, second} <= {
        r["tenant_id"] for r in await worker_pool.fetch("SELECT tenant_id FROM webhook_endpoints")
    }
    for table in ("accounts", "api_keys", "idempotency_keys", "tenants", "transfers", "entries"):
        assert await worker_pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_the_reporting_role_reads_within_a_scope_and_cannot_write(
    pg_server: EmbeddedPostgres, app_pool: Pool
) -> None:
    tenant = await _tenant_with_rows(app_pool)
    conn = await asyncpg.connect(pg_server.role_url(roles.REPORTING))
    try:
        async with conn.transaction():
            await scope(conn, [tenant])
            assert await conn.fetchval("SELECT count(*) FROM accounts") == 1
        for statement in (
            "DELETE FROM accounts",
            "UPDATE outbox SET published_at = now()",
            "SELECT * FROM kassa_authenticate('\\x00'::bytea)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_sweepers_cross_tenant_doors_work_for_the_application_role_and_return_only_ids(
    app_pool: Pool, pool: Pool
) -> None:
    from kassa.ledger.adapters import queries
    from kassa.store import idempotency

    tenant = await _tenant_with_rows(app_pool)
    async with pool.acquire() as owner, owner.transaction():
        await owner.execute(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, 'src', 'EUR', 'debit', true)",
            tenant,
        )
        await owner.execute(
            "INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount, status,"
            " timeout_s, expires_at, request_hash, created_at, updated_at)"
            " VALUES ($1, 'due-hold', 'src', 'wallet', 'EUR', 5, 'pending', 1, now() - interval '1 minute',"
            " '\\x00', now(), now())",
            tenant,
        )
        await owner.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '3 days' WHERE tenant_id = $1", tenant
        )
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfers") == 0
        assert (tenant, "due-hold") in await queries.due_pending(conn, 10_000)
        while await idempotency.purge_expired(conn, 48 * 3600, 1000):
            pass
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant) == 0
    await pool.execute("UPDATE transfers SET status = 'voided' WHERE tenant_id = $1 AND id = 'due-hold'", tenant)


async def test_a_coalesced_batch_of_two_tenants_applies_both_under_the_application_role(app_pool: Pool) -> None:
    from kassa.ledger.adapters.engine import Job, run_batch
    from kassa.ledger.domain.model import CreateTransfer

    tenants = [await _tenant_with_rows(app_pool), await _tenant_with_rows(app_pool)]
    ledger = LedgerService(app_pool, batcher=None)  # type: ignore[arg-type]  # accounts only: the batch runs below
    for tenant in tenants:
        await ledger.create_account(Account(tenant, "bank", "EUR", "debit", True, Balance()), None, _render)
    jobs = [
        Job(CreateTransfer(t, f"x-{i}", "bank", "wallet", "EUR", 100 + i, False, None, None, {}, b"h"))
        for i, t in enumerate(tenants)
    ]
    async with app_pool.acquire() as conn:
        results = await run_batch(conn, jobs)
    assert [getattr(getattr(r, "transfer", r), "status", r) for r in results] == ["posted", "posted"]
    for i, tenant in enumerate(tenants):
        wallet = await ledger.get_account(tenant, "wallet")
        assert wallet.balance.credits_posted == 100 + i


async def test_every_notification_service_call_works_under_the_application_role(app_pool: Pool) -> None:
    from kassa.notifications.errors import WebhookEndpointNotFound
    from kassa.store.idempotency import IdemClaim

    tenant, other = await _tenant_with_rows(app_pool), await _tenant_with_rows(app_pool)
    service = NotificationService(app_pool, _KEYS)
    claim = IdemClaim(tenant, "ep-" + uuid.uuid4().hex, b"h")
    created = await service.create_endpoint(tenant, "https://example.com/a", ["TransferPosted"], claim, _render)
    assert isinstance(created, EndpointWithSecret), created  # a first request, not a replay
    endpoint = created.endpoint
    assert (await service.get_endpoint(tenant, endpoint.id)).url == "https://example.com/a"
    assert endpoint.id in {e.id for e in (await service.list_endpoints(tenant, None, 50)).data}
    assert endpoint.id not in {e.id for e in (await service.list_endpoints(other, None, 50)).data}
    rotated = await service.rotate_secret(tenant, endpoint.id, 0)
    assert rotated.secret != created.secret
    assert (await service.list_deliveries(tenant, endpoint.id, None, 50)).data == []
    assert (await service.list_notifications(tenant, "wallet", None, 50)).data == []
    with pytest.raises(WebhookEndpointNotFound):
        await service.get_endpoint(other, endpoint.id)
    await service.delete_endpoint(tenant, endpoint.id)
    with pytest.raises(WebhookEndpointNotFound):
        await service.get_endpoint(tenant, endpoint.id)


@pytest.mark.parametrize("command", [["worker", "relay"], ["events", "dlq", "list"]])
def test_the_event_runtime_started_as_the_application_role_refuses_instead_of_seeing_nothing(
    app_url: str, tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update({"KASSA_DATABASE_URL": app_url, "KASSA_DATA_DIR": str(tmp_path), "KASSA_NATS_URL": "nats://127.0.0.1:1"})
    kassa = Path(sys.executable).parent / "kassa"
    refused = subprocess.run([str(kassa), *command], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "KASSA_WORKER_DATABASE_URL" in refused.stderr and roles.APP in refused.stderr
