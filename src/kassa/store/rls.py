"""Row-level security and privileges, applied by `migrate()` after the migrations, every time.

Why a step of the runner and not a migration: tables are added by migrations written by many
hands, and a tenant table that forgot its policy would be readable across tenants by whoever
forgot the WHERE clause too. This step runs at the end of every `kassa migrate`, under the
migration lock, and is idempotent:

- every table of `public` with a `tenant_id` column (and `tenants`, keyed by `id`) gets ROW LEVEL
  SECURITY enabled and forced (so even its owner is subject to it unless it has BYPASSRLS), and
  the policy `kassa_tenant` unless it already has one of that name: a row is visible and
  writable only when its tenant is in the transaction's scope (`store.tenancy`);
- the tables of `WORKER_TABLES` also get `kassa_worker_all` for the `kassa_worker` role: the
  event runtime (relay, consumers, dead letters, replays, webhook delivery) is cross-tenant by
  nature, so it runs as its own role that sees every tenant's rows of those tables and of no
  other (see `store.roles`);
- `kassa_app` and `kassa_worker` get DML (never DDL, never TRUNCATE) on every table, and
  `kassa_reporting` SELECT; SECURITY DEFINER functions are executable by the application roles
  only (not PUBLIC). Default privileges do the same for tables the owner creates later.

Roles that do not exist (an external database run as one role) are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.store import roles

if TYPE_CHECKING:
    from kassa.store.pool import Conn

TENANT_POLICY = "kassa_tenant"
WORKER_POLICY = "kassa_worker_all"
# Tables the event runtime reads and writes across tenants. A new table that the relay, a
# consumer or the webhook delivery worker touches outside a tenant scope is added here.
WORKER_TABLES = (
    "outbox",
    "notification_accounts",
    "event_dead_letters",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "notifications",
)
# The tenant scope of the transaction, as `store.tenancy` sets it; NULL or '' admits nothing.
SCOPE_SQL = "string_to_array(current_setting('kassa.tenant_id', true), ',')"

_TENANT_TABLES = """
SELECT c.relname AS name,
       CASE WHEN c.relname = 'tenants' THEN 'id' ELSE 'tenant_id' END AS column_name,
       c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1) AS has_policy,
       EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2) AS has_worker_policy
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND (c.relname = 'tenants' OR EXISTS (
        SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
ORDER BY c.relname
"""
_DEFINER_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.prosecdef
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def existing_roles(conn: Conn) -> set[str]:
    rows = await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", list(roles.ROLES))
    return {r["rolname"] for r in rows}


_SEES_EVERY_TENANT = f"""
SELECT r.rolsuper OR r.rolbypassrls OR EXISTS (
    SELECT FROM pg_roles w WHERE w.rolname = '{roles.WORKER}' AND pg_has_role(current_user, w.oid, 'USAGE'))
FROM pg_roles r WHERE r.rolname = current_user
"""


async def cross_tenant_refusal(conn: Conn) -> str | None:
    """Why this connection's role cannot do the event runtime's cross-tenant work, or None when
    it can: the worker role (or a member), or a role that row-level security does not apply to.
    A relay started as the application role would otherwise see no outbox row and silently
    relay nothing."""
    if await conn.fetchval(_SEES_EVERY_TENANT):
        return None
    user = await conn.fetchval("SELECT current_user")
    return (
        f"the database role {user} is subject to row-level security and is not {roles.WORKER}: it would"
        f" see no tenant's events. Set KASSA_WORKER_DATABASE_URL to the {roles.WORKER} role (docs/database.md)"
    )


async def secure_schema(conn: Conn) -> list[str]:
    """Apply policies and privileges (see the module docstring); returns the tables that got a
    new tenant policy. Runs in one transaction on the migration connection."""
    present = await existing_roles(conn)
    secured: list[str] = []
    async with conn.transaction():
        for table in await conn.fetch(_TENANT_TABLES, TENANT_POLICY, WORKER_POLICY):
            name = _ident(table["name"])
            if not table["enabled"]:
                await conn.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
            if not table["forced"]:
                await conn.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
            if not table["has_policy"]:
                column = _ident(table["column_name"])
                await conn.execute(f"CREATE POLICY {TENANT_POLICY} ON {name} USING ({column} = ANY ({SCOPE_SQL}))")
                secured.append(table["name"])
            if table["name"] in WORKER_TABLES and roles.WORKER in present and not table["has_worker_policy"]:
                await conn.execute(
                    f"CREATE POLICY {WORKER_POLICY} ON {name} TO {roles.WORKER} USING (true) WITH CHECK (true)"
                )
        await _grant(conn, present)
    return secured


async def _grant(conn: Conn, present: set[str]) -> None:
    writers = ", ".join(r for r in (roles.APP, roles.WORKER) if r in present)
    if writers:
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {writers}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {writers}")
        await conn.execute(f"REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {writers}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {writers}"
        )
        await conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {writers}")
    if roles.REPORTING in present:
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {roles.REPORTING}")
        await conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {roles.REPORTING}")
    # A SECURITY DEFINER function is a narrow door past row-level security: only the roles
    # that need it may call it.
    for row in await conn.fetch(_DEFINER_FUNCTIONS):
        await conn.execute(f"REVOKE EXECUTE ON FUNCTION {row['signature']} FROM PUBLIC")
        if writers:
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {row['signature']} TO {writers}")


__all__ = [
    "SCOPE_SQL",
    "TENANT_POLICY",
    "WORKER_POLICY",
    "WORKER_TABLES",
    "cross_tenant_refusal",
    "existing_roles",
    "secure_schema",
]
