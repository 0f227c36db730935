"""`kassa events`: operator tools for dead letters and history replays."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any

import msgspec

from kassa.settings import Settings
from kassa.shared.errors import KassaError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("events", help="dead letters and event replays")
    sub = parser.add_subparsers(dest="events_command", required=True)

    dlq = sub.add_parser("dlq", help="events consumers gave up on").add_subparsers(dest="dlq_command", required=True)
    listing = dlq.add_parser("list", help="list open dead letters (JSON lines)")
    listing.add_argument("--consumer")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=lambda a: _run(_dlq_list(a)))
    replay = dlq.add_parser("replay", help="apply dead letters again (all open ones, or --id)")
    replay.add_argument("--id", dest="ids", type=int, action="append")
    replay.set_defaults(func=lambda a: _run(_dlq_replay(a)))

    history = sub.add_parser("replay", help="re-deliver past events to one consumer (exactly once in effect)")
    history.add_argument("--from", dest="since", type=_rfc3339, required=True, help="RFC 3339 time, inclusive")
    history.add_argument("--until", type=_rfc3339, help="RFC 3339 time, exclusive")
    history.add_argument("--consumer", required=True)
    history.set_defaults(func=lambda a: _run(_replay(a)))


def _rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-01-31T12:00:00Z")
    return value


def _run(coro: Any) -> int:
    try:
        code: int = asyncio.run(coro)
    except KassaError as exc:
        sys.stderr.write(f"{exc.code}: {exc.detail}\n")
        return 1
    return code


async def _pool() -> Any:
    from kassa.cli.runtime import worker_database_url
    from kassa.store.pool import create_pool
    from kassa.store.rls import cross_tenant_refusal

    # Dead letters and replays are cross-tenant: the worker role's connection (store.rls).
    url = worker_database_url(Settings.from_env())
    if not url:
        raise KassaError("KASSA_WORKER_DATABASE_URL (or KASSA_DATABASE_URL) is not set")
    pool = await create_pool(url, size_max=2)
    async with pool.acquire() as conn:
        refusal = await cross_tenant_refusal(conn)
    if refusal is not None:
        await pool.close()
        raise KassaError(refusal)
    return pool


def _print(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


async def _dlq_list(args: argparse.Namespace) -> int:
    from kassa.events.dlq import list_dead_letters

    pool = await _pool()
    try:
        for letter in await list_dead_letters(pool, args.consumer, args.limit):
            _print(letter)
    finally:
        await pool.close()
    return 0


async def _dlq_replay(args: argparse.Namespace) -> int:
    from kassa.bootstrap import event_wiring
    from kassa.events.dlq import replay_dead_letters

    pool = await _pool()
    try:
        result = await replay_dead_letters(pool, event_wiring().handlers, args.ids)
    finally:
        await pool.close()
    _print(result)
    return 0 if result.failed == 0 else 1


async def _replay(args: argparse.Namespace) -> int:
    from kassa.bootstrap import event_wiring
    from kassa.events.replay import replay_history

    handler = event_wiring().handler_named(args.consumer)
    pool = await _pool()
    try:
        result = await replay_history(pool, handler, args.since, args.until)
    finally:
        await pool.close()
    _print(result)
    return 0
