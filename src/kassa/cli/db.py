"""`kassa migrate`: apply pending migrations (safe to run from several processes at once)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from kassa.cli.runtime import database_url
from kassa.settings import Settings
from kassa.store.migrate import migrate

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("migrate", help="apply database migrations")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = database_url(settings)
    if url is None:
        print("no database: set KASSA_DATABASE_URL or start `kassa up`", file=sys.stderr)  # noqa: T201
        return 2
    applied = asyncio.run(migrate(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))  # noqa: T201
    return 0
