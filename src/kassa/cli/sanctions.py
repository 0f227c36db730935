"""`kassa sanctions load FILE.csv`: load the operator's sanctions list (OpenSanctions "simple" CSV
shape) as a new version, then screen every known customer against it again.

The list is shared by every tenant, so the load runs as the schema owner (the migration URL);
rescreening reads each tenant's customers in that tenant's own scope.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kassa.cli.runtime import database_url, migration_database_url
from kassa.compliance import sanctions
from kassa.identity import CustomerService
from kassa.settings import Settings
from kassa.shared.clock import utcnow
from kassa.shared.errors import InvalidRequest
from kassa.store.master_key import MasterKeyError, load_keyring
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    import argparse

    from kassa.compliance.sanctions import CustomerDirectory
    from kassa.store.pool import Pool


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("sanctions", help="the sanctions list customers are screened against")
    ssub = parser.add_subparsers(dest="sanctions_command", required=True)
    load = ssub.add_parser("load", help="load an OpenSanctions CSV as the new list and rescreen customers")
    load.add_argument("file", type=Path)
    load.add_argument("--no-rescreen", action="store_true", help="only load; screen customers later")
    load.set_defaults(func=load_list)


def customer_directory(settings: Settings, pool: Pool) -> CustomerDirectory:
    """Where rescreening reads customers' names: identity's customer service (it opens them with
    the tenants' data keys, hence the master key)."""
    return CustomerService(pool, load_keyring(settings.master_key_path))  # type: ignore[return-value]


def load_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    owner_url, app_url = migration_database_url(settings), database_url(settings)
    if owner_url is None or app_url is None:
        print("no database: set KASSA_DATABASE_URL or start `kassa up`", file=sys.stderr)  # noqa: T201
        return 2

    async def go() -> dict[str, object]:
        owner = await create_pool(owner_url, size_max=2)
        app = await create_pool(app_url, size_max=2)
        try:
            version, count = await sanctions.load(owner, args.file)
            result: dict[str, object] = {"list_version": version, "entries": count}
            if not args.no_rescreen:
                directory = customer_directory(settings, app)
                result.update(await sanctions.rescreen(owner, app, directory, utcnow()))
            return result
        finally:
            await owner.close()
            await app.close()

    try:
        print(json.dumps(asyncio.run(go()), indent=2))  # noqa: T201
    except (InvalidRequest, MasterKeyError, OSError) as exc:
        print(f"kassa sanctions load: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
