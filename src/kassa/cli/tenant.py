"""`kassa tenant create --name NAME`: create a tenant and print its API key (shown once)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

from kassa.cli.runtime import database_url
from kassa.identity.service import IdentityService
from kassa.settings import Settings
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("tenant", help="manage tenants")
    tsub = parser.add_subparsers(dest="tenant_command", required=True)
    create = tsub.add_parser("create", help="create a tenant and print its API key")
    create.add_argument("--name", required=True)
    create.set_defaults(func=create_tenant)


def create_tenant(args: argparse.Namespace) -> int:
    url = database_url(Settings.from_env())
    if url is None:
        print("no database: set KASSA_DATABASE_URL or start `kassa up`", file=sys.stderr)  # noqa: T201
        return 2

    async def go() -> dict[str, str]:
        pool = await create_pool(url, size_max=2)
        try:
            result = await IdentityService(pool).create_tenant(args.name, None, None)
            assert not hasattr(result, "body")  # no idempotency key, so never a replay
            tenant, key = result
            return {"id": tenant.id, "name": tenant.name, "api_key_id": key.id, "api_key": key.secret}
        finally:
            await pool.close()

    print(json.dumps(asyncio.run(go()), indent=2))  # noqa: T201
    return 0
