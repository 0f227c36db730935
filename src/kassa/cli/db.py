"""`kassa migrate`: apply pending migrations (safe to run from several processes at once), then
seal webhook secrets that rows from before migration 0010 still hold in plaintext (when the
master key file is available; otherwise it says how to finish);
`kassa roles-sql --database NAME`: the SQL that provisions kassa's roles on an external server."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from kassa.cli.runtime import migration_database_url
from kassa.settings import Settings
from kassa.store.migrate import migrate

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("migrate", help="apply database migrations")
    parser.set_defaults(func=run)
    roles_sql = sub.add_parser("roles-sql", help="print SQL that creates kassa's roles (fresh passwords)")
    roles_sql.add_argument("--database", default="kassa", help="the database kassa uses")
    roles_sql.set_defaults(func=print_roles_sql)


def print_roles_sql(args: argparse.Namespace) -> int:
    """For an external PostgreSQL: run the output once as a superuser connected to the database,
    then set KASSA_DATABASE_URL / KASSA_MIGRATION_DATABASE_URL / KASSA_WORKER_DATABASE_URL with
    the passwords from the comments (docs/database.md)."""
    from kassa.store import roles

    passwords = {role: roles.new_password() for role in roles.ROLES}
    lines = [f"-- {role}: password {passwords[role]}" for role in roles.ROLES]
    sys.stdout.write("\n".join(lines) + "\n" + roles.provision_sql(args.database, passwords))
    return 0


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = migration_database_url(settings)
    if url is None:
        sys.stderr.write("no database: set KASSA_MIGRATION_DATABASE_URL (or KASSA_DATABASE_URL) or start `kassa up`\n")
        return 2
    applied = asyncio.run(migrate(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))  # noqa: T201
    from kassa.bootstrap import seal_secrets_at_rest
    from kassa.store.master_key import MasterKeyError

    try:
        sealed = asyncio.run(seal_secrets_at_rest(url, settings))
    except MasterKeyError as exc:
        print(f"secrets not sealed: {exc}; run `kassa migrate` again with the key", file=sys.stderr)  # noqa: T201
        return 1
    if sealed:
        print(f"sealed the signing secrets of {sealed} webhook endpoints")  # noqa: T201
    return 0
