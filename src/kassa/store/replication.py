"""Streaming replication between two embedded PostgreSQL servers: a standby, made synchronous
or left asynchronous, promoted when the primary is lost.

This is what Aurora does for us in production (a writer and readers on one shared storage
volume across three zones; failover promotes a reader). Here the drill (kassa.dr) builds the
same shape from two processes on one machine so that recovery can be measured for real.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from kassa.shared.invariants import invariant
from kassa.shared.limits import promote_timeout_s, standby_ready_timeout_s
from kassa.store.backup import allow_replication, copy_credentials, psql, run_tool, start_existing
from kassa.store.dr_errors import ReplicationFailed
from kassa.store.embedded import EmbeddedPostgres, _chown_tree, bin_dir, free_port

REPLICATION_ROLE = "kassa_replicator"
SYNC_COMMIT_LEVELS = ("on", "remote_apply")


def grant_replication(primary: EmbeddedPostgres) -> str:
    """Create (or re-key) the replication role and allow it in pg_hba.conf; returns its password.

    A dedicated role with only REPLICATION, authenticated by password, so that the standby's
    connection does not depend on the superuser or on trust authentication."""
    password = secrets.token_urlsafe(24)
    exists = psql(primary, f"SELECT 1 FROM pg_roles WHERE rolname = '{REPLICATION_ROLE}'")
    verb = "ALTER" if exists == "1" else "CREATE"
    psql(primary, f"{verb} ROLE {REPLICATION_ROLE} WITH REPLICATION LOGIN PASSWORD '{password}'")
    allow_replication(primary, REPLICATION_ROLE)
    return password


def replication_url(primary: EmbeddedPostgres, password: str) -> str:
    """The replication role's URL (what `kassa backup` needs: REPLICATION, nothing else)."""
    return f"postgresql://{REPLICATION_ROLE}:{quote(password, safe='')}@127.0.0.1:{primary.port}/postgres"


def create_standby(primary: EmbeddedPostgres, root: Path, name: str, password: str) -> EmbeddedPostgres:
    """Clone `primary` into `root` with pg_basebackup (-R writes the standby's connection, -C -S
    a replication slot so the primary keeps the WAL the standby has not received) and start it.
    `name` is the standby's application_name, the one synchronous_standby_names refers to."""
    invariant(name.isidentifier(), "a standby name is a plain identifier")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded server runs as an unprivileged user
        _chown_tree(root)
    # The password travels in PGPASSWORD; -R still writes it into the standby's primary_conninfo
    # (postgresql.auto.conf, mode 0600), which is how the standby authenticates.
    conninfo = f"host=127.0.0.1 port={primary.port} user={REPLICATION_ROLE} application_name={name}"
    args = [str(bin_dir() / "pg_basebackup"), "-d", conninfo, "-D", str(root / "data"), "-R", "-C", "-S", name]
    result = run_tool([*args, "-X", "stream", "--checkpoint=fast", "--no-password"], check=False, password=password)
    if result.returncode != 0:
        raise ReplicationFailed(f"pg_basebackup for the standby failed: {result.stderr.strip()[-2000:]}")
    copy_credentials(primary.root, root)
    _chown_tree(root)
    standby = EmbeddedPostgres(root=root, port=free_port())
    start_existing(standby)
    return standby


def wait_streaming(
    primary: EmbeddedPostgres, name: str, sync: bool, timeout_s: float = standby_ready_timeout_s
) -> None:
    """Until the primary reports the standby streaming (and, if `sync`, as its sync standby)."""
    wanted = "sync" if sync else "async"
    query = f"SELECT state || ',' || sync_state FROM pg_stat_replication WHERE application_name = '{name}'"
    deadline = time.monotonic() + timeout_s
    while (state := psql(primary, query)) != f"streaming,{wanted}":
        if time.monotonic() > deadline:
            raise ReplicationFailed(f"standby {name} is {state or 'not connected'}, expected streaming,{wanted}")
        time.sleep(0.05)


def make_synchronous(primary: EmbeddedPostgres, name: str, level: str = "on") -> None:
    """Commits on the primary wait for the standby: `on` until it has flushed the WAL,
    `remote_apply` until it has applied it. Set after the standby was cloned, so that the
    standby's own copy of the configuration does not name a standby it will never have."""
    invariant(level in SYNC_COMMIT_LEVELS, "a synchronous level that waits for the standby")
    psql(primary, f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({name})'")
    psql(primary, f"ALTER SYSTEM SET synchronous_commit = '{level}'")
    psql(primary, "SELECT pg_reload_conf()")


def standby_state(primary: EmbeddedPostgres, name: str) -> tuple[int, str] | None:
    """WAL bytes the standby has not replayed yet and its sync_state ("sync", "async", ...), as
    the primary sees them; None if it is not connected."""
    query = (
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint || ',' || sync_state"
        f" FROM pg_stat_replication WHERE application_name = '{name}'"
    )
    found = psql(primary, query)
    if not found:
        return None
    lag, sync_state = found.split(",")
    return int(lag), sync_state


def kill_server(server: EmbeddedPostgres) -> tuple[datetime, float]:
    """SIGKILL the postmaster and every backend at once (a lost machine, not a shutdown); returns
    the instant of the kill (wall clock and monotonic). pg_ctl starts the postmaster in a session
    of its own, so its process group holds exactly the server's processes."""
    pid = int((server.data / "postmaster.pid").read_text().splitlines()[0])
    invariant(os.getpgid(pid) == pid, "the postmaster leads its own process group")
    os.killpg(pid, signal.SIGKILL)
    killed = (datetime.now(UTC), time.monotonic())
    deadline = time.monotonic() + promote_timeout_s
    while _group_alive(pid):
        if time.monotonic() > deadline:
            raise ReplicationFailed(f"a process of the server (group {pid}) survived SIGKILL")
        time.sleep(0.01)
    return killed


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (a zombie is not: in a container whose
    init does not reap, the dead postmaster and backends may stay zombies for good)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def promote(standby: EmbeddedPostgres, timeout_s: float = promote_timeout_s) -> None:
    """Promote the standby to a primary and wait until it accepts writes."""
    pg_ctl = [str(bin_dir() / "pg_ctl"), "-D", str(standby.data), "-w", "-t", str(int(timeout_s)), "promote"]
    result = run_tool(pg_ctl, check=False)
    if result.returncode != 0:
        raise ReplicationFailed(f"pg_ctl promote failed: {result.stderr.strip()}")
    deadline = time.monotonic() + timeout_s
    while psql(standby, "SELECT pg_is_in_recovery()") != "f":
        if time.monotonic() > deadline:
            raise ReplicationFailed("the standby is still in recovery after promotion")
        time.sleep(0.02)


__all__ = [
    "REPLICATION_ROLE",
    "SYNC_COMMIT_LEVELS",
    "create_standby",
    "grant_replication",
    "kill_server",
    "make_synchronous",
    "promote",
    "replication_url",
    "standby_state",
    "wait_streaming",
]
