"""The PostgreSQL roles kassa runs as, and the SQL that provisions them (least privilege).

| role              | used by                                   | may                                         |
|-------------------|-------------------------------------------|---------------------------------------------|
| `kassa_owner`     | `kassa migrate` (and `kassa up`'s setup)  | own the schema and every table; BYPASSRLS so |
|                   |                                           | migrations and the narrow SECURITY DEFINER  |
|                   |                                           | functions see every tenant                  |
| `kassa_app`       | the API (`kassa api`), `kassa tenant`     | DML only; subject to row-level security     |
| `kassa_worker`    | `kassa worker`, `kassa events`            | DML only; sees every tenant's rows of the   |
|                   |                                           | event and notification tables only          |
| `kassa_reporting` | operators' reports                        | SELECT only; subject to row-level security  |

None of them is a superuser, may create roles or databases; only the owner may run DDL (it owns
the `public` schema, nobody else may CREATE in it). The embedded PostgreSQL provisions them with
generated passwords (see `store.embedded`); an external database is provisioned once by an
operator with `provision_sql()` (docs/database.md).
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote, urlsplit, urlunsplit

OWNER = "kassa_owner"
APP = "kassa_app"
WORKER = "kassa_worker"
REPORTING = "kassa_reporting"
ROLES = (OWNER, APP, WORKER, REPORTING)
SUPERUSER = "postgres"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


def new_password() -> str:
    """A 192-bit random password of URL-safe characters (no quoting needed in a DSN)."""
    return secrets.token_urlsafe(24)


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    """`url` with its user and password (and optionally its database) replaced."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _role_sql(passwords: dict[str, str]) -> list[str]:
    attrs = {
        OWNER: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS",
        APP: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
        WORKER: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
        REPORTING: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    }
    sql = []
    for role in ROLES:
        password = passwords[role]
        # Checked, not quoted: a generated password never needs quoting, and refusing anything
        # else keeps a password from ever closing the literal.
        if not _PASSWORD.match(password):
            raise ValueError(f"password for {role} must be 16+ URL-safe characters")
        sql.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN"
            f" CREATE ROLE {role}; END IF; END $$;"
        )
        sql.append(f"ALTER ROLE {role} {attrs[role]} PASSWORD '{password}';")
    return sql


def _database_sql(database: str) -> list[str]:
    others = ", ".join(r for r in ROLES if r != OWNER)
    return [
        f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC;',
        f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {", ".join(ROLES)};',
        f"ALTER SCHEMA public OWNER TO {OWNER};",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
        f"GRANT USAGE ON SCHEMA public TO {others};",
        # Objects a kassa from before these roles created as the superuser change hands once, so
        # an existing data directory keeps working (the loop finds nothing on a fresh database).
        f"""DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relowner <> '{OWNER}'::regrole LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO {OWNER}', r.name);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND p.proowner <> '{OWNER}'::regrole LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO {OWNER}', r.name);
  END LOOP;
END $$;""",
    ]


def provision_sql(database: str, passwords: dict[str, str]) -> str:
    """Idempotent SQL, run by a superuser (or a role with CREATEROLE that may grant BYPASSRLS)
    connected to `database`: creates or updates the four roles and gives `kassa_owner` the schema."""
    if not _IDENT.match(database):
        raise ValueError(f"database name {database!r} must be a plain lower-case identifier")
    return "\n".join([*_role_sql(passwords), *_database_sql(database)]) + "\n"


__all__ = [
    "APP",
    "OWNER",
    "REPORTING",
    "ROLES",
    "SUPERUSER",
    "WORKER",
    "new_password",
    "provision_sql",
    "with_credentials",
]
