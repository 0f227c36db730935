"""`kassa backup` and `kassa restore --to <RFC3339>`: base backups and point-in-time restore of
the embedded PostgreSQL (store/backup.py). On AWS, Aurora's automated backups do both; see
docs/dr.md for the equivalent settings."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kassa.cli.runtime import database_url, runtime_file
from kassa.settings import Settings, without_password
from kassa.shared.limits import backups_kept_default
from kassa.store import backup
from kassa.store.dr_errors import RecoveryError
from kassa.store.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    import argparse


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - this command talks to a person


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    take = sub.add_parser("backup", help="take a base backup of the database (WAL is archived continuously)")
    take.add_argument("--list", action="store_true", help="list the base backups instead")
    take.add_argument("--keep", type=int, default=backups_kept_default, help="base backups to keep (with their WAL)")
    take.set_defaults(func=run_backup)
    restore = sub.add_parser("restore", help="restore the database to an instant (base backup + WAL)")
    restore.add_argument("--to", required=True, help="the instant, RFC 3339 (e.g. 2026-12-01T08:00:00Z)")
    restore.add_argument("--into", type=Path, help="new data directory (default: KASSA_DATA_DIR/restored-<time>)")
    restore.add_argument("--replace", action="store_true", help="make it the database of the next `kassa up`")
    restore.add_argument("--serve", action="store_true", help="keep the restored server running until Ctrl-C")
    restore.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.list:
        for b in backup.list_backups(settings.backup_dir):
            _say(f"{b.label}  finished {b.finished_at.isoformat()}  timeline {b.timeline}  {b.start_lsn}..{b.end_lsn}")
        return 0
    url = _backup_url(settings)
    if url is None:
        _say("no database: set KASSA_DATABASE_URL or start `kassa up`")
        return 2
    if not _archiving(url):
        _say("warning: WAL archiving is off on this server; this backup restores only to its own end")
    try:
        taken = backup.take_base_backup(url, settings.backup_dir)
        removed = backup.prune_backups(settings.backup_dir, args.keep)
    except RecoveryError as exc:
        _say(f"{exc.code}: {exc.detail}")
        return 1
    _say(json.dumps(taken.to_json() | {"pruned": removed}, indent=2))
    return 0


def _backup_url(settings: Settings) -> str | None:
    """KASSA_DATABASE_URL, or the running embedded server's superuser (the platform's own
    roles have no REPLICATION, which pg_basebackup needs)."""
    if settings.database_url:
        return settings.database_url
    running = database_url(settings)
    if running is None:
        return None
    server = EmbeddedPostgres(root=settings.data_dir / "postgres", port=urlsplit(running).port or 0)
    if server.initialized():
        backup.allow_replication(server, urlsplit(server.url).username or "postgres")
    return server.url


def _archiving(url: str) -> bool:
    import asyncpg

    async def check() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return bool(await conn.fetchval("SELECT current_setting('archive_mode') <> 'off'"))
        finally:
            await conn.close()

    return asyncio.run(check())


def run_restore(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        target = datetime.fromisoformat(args.to.replace("Z", "+00:00"))
    except ValueError:
        _say(f"--to must be RFC 3339, got {args.to!r}")
        return 2
    if target.tzinfo is None:
        _say("--to needs a time zone (Z or +hh:mm)")
        return 2
    if args.replace and runtime_file(settings).exists():
        _say("kassa up is running on this data directory; stop it before --replace")
        return 1
    into = args.into or settings.data_dir / f"restored-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    live = settings.data_dir / "postgres"
    try:
        restored = backup.restore(settings.backup_dir, target, into, live if live.exists() else None)
    except RecoveryError as exc:
        _say(f"{exc.code}: {exc.detail}")
        return 1
    last = restored.last_replayed_commit_at
    _say(
        f"restored to {target.isoformat()} from base backup {restored.backup.label}\n"
        f"  last commit replayed: {last.isoformat() if last else 'none after the backup'}\n"
        f"  data directory: {into}\n  database: {without_password(restored.server.url)}"
    )
    if args.serve:
        _serve_until_signal()
    restored.server.stop()
    if args.replace:
        if live.exists():
            aside = settings.data_dir / f"postgres.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
            live.rename(aside)
            _say(f"  the previous database is kept in {aside}")
        shutil.move(str(into), str(live))
        _say("  the next `kassa up` serves the restored database")
    return 0


def _serve_until_signal() -> None:
    _say("serving the restored database; Ctrl-C stops it")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)
