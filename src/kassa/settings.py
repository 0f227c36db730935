"""Settings from environment variables (documented in the README). Read once, at bootstrap."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kassa.events.limits import kafka_replication_factor_default, kafka_replication_factor_max
from kassa.shared.limits import (
    hold_timeout_s_max,
    http_body_read_timeout_s,
    http_workers_max,
    pending_topup_timeout_s,
    pending_withdrawal_timeout_s,
    rate_limit_burst_default,
    rate_limit_per_s_default,
)

DEFAULT_HTTP_PORT = 8000
# The highest TCP port number (a property of TCP, not a limit of kassa's).
_TCP_PORT_MAX = 65535


class SettingsError(ValueError):
    """A setting with a value kassa cannot use; its message is one line naming the variable and
    what it accepts (`kassa` prints it instead of a traceback)."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


def tcp_port(name: str, value: int, *, free_allowed: bool = False) -> int:
    """`value` if it is a TCP port `name` can use: 1 to 65535, or 0 where `free_allowed` says a
    free one may be picked for it (only the API's port, by `kassa up`, which then prints the
    port it picked). Raises SettingsError."""
    low = 0 if free_allowed else 1
    if not low <= value <= _TCP_PORT_MAX:
        free = " (0: kassa up picks a free port)" if free_allowed else ""
        raise SettingsError(f"{name} must be a TCP port from {low} to {_TCP_PORT_MAX}{free}, not {value}")
    return value


def _port(name: str, default: int, *, free_allowed: bool = False) -> int:
    if os.environ.get(name) in (None, ""):
        return default
    return tcp_port(name, _int(name, default), free_allowed=free_allowed)


def _counted(name: str, default: int, most: int, unit: str = "") -> int:
    """An integer setting from 1 to `most` (`unit` names what it counts, in the message)."""
    value = _int(name, default)
    if not 0 < value <= most:
        raise SettingsError(f"{name} must be from 1 to {most}{unit}, not {value}")
    return value


def _names(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def without_password(url: str) -> str:
    """`url` fit for a log line or a banner: the password (or token) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{user}:***@{host}" if parts.password is not None else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _bool(name: str) -> bool:
    """Off unless set to 1/true/yes/on; anything unrecognised is an error, not a silent off."""
    raw = (os.environ.get(name) or "").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise SettingsError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, not {raw!r}")
    return raw in _TRUE


@dataclass(frozen=True, slots=True)
class Settings:
    # The application role's database (API, `kassa tenant`); the migration role's and the
    # event workers' fall back to it when unset (one role for everything: development only).
    database_url: str | None
    nats_url: str | None
    kafka_bootstrap: str | None
    redis_url: str | None
    http_host: str
    # 0: `kassa up` picks a free port once, before it starts the API, and prints it; the API's
    # processes (and their restarts) then all use that one port. `kassa api` needs a real one.
    http_port: int
    http_workers: int
    data_dir: Path
    admin_key: str | None
    log_level: str
    # Dependencies whose outage makes /readyz answer 503 (KASSA_READY_REQUIRES, comma-separated).
    ready_requires: tuple[str, ...] = ("database", "broker")
    http_body_read_timeout_s: float = http_body_read_timeout_s
    migration_database_url: str | None = None
    worker_database_url: str | None = None
    # NATS credentials for an external cluster (user:password in KASSA_NATS_URL works too).
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None  # a .creds file (JWT + NKey seed)
    # Kafka TLS and SASL (checked by kassa.events.bus.kafka_security when the bus is built).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    kafka_ca_file: Path | None = None
    kafka_replication_factor: int = kafka_replication_factor_default
    # The key file that seals secrets at rest (see kassa.store.master_key); None means
    # KASSA_DATA_DIR/master_key.
    master_key_file: Path | None = None
    # The sandbox payment provider's URL (`kassa up` starts it and sets this) and the file of the
    # secret that signs its callbacks; None means KASSA_DATA_DIR/sandbox_secret.
    sandbox_url: str | None = None
    sandbox_secret_file: Path | None = None
    # How long a top-up and a withdrawal wait for the provider's outcome: then their hold expires
    # and they fail with `provider_timeout` (KASSA_TOPUP_TIMEOUT_S, KASSA_WITHDRAWAL_TIMEOUT_S).
    topup_timeout_s: int = pending_topup_timeout_s
    withdrawal_timeout_s: int = pending_withdrawal_timeout_s
    # Webhooks may go to loopback and private addresses (tests, local development); never to
    # link-local or metadata addresses, whatever this says.
    webhook_allow_private: bool = False
    # Base backups and the WAL archive of the embedded PostgreSQL (from_env: data_dir/backups).
    backup_dir: Path = Path(".kassa/backups")
    wal_archive: bool = True  # archive the embedded PostgreSQL's WAL continuously (point-in-time restore)
    # The named default rate limit of API keys without their own (token bucket).
    rate_limit_per_s: int = rate_limit_per_s_default
    rate_limit_burst: int = rate_limit_burst_default
    # The sandbox KYC provider (compliance) is on when its callback secret is set; its results
    # are posted to the callback URL (default: this API's own /v1/kyc/callbacks/sandbox).
    kyc_sandbox_secret: str | None = None
    kyc_callback_url: str | None = None
    # `kassa worker` run on its own serves /metrics here (KASSA_METRICS_PORT); None: it does not.
    metrics_port: int | None = None

    @property
    def migration_url(self) -> str | None:
        """Where `kassa migrate` connects: the schema owner's role."""
        return self.migration_database_url or self.database_url

    @property
    def worker_url(self) -> str | None:
        """Where `kassa worker` and `kassa events` connect: the cross-tenant worker role."""
        return self.worker_database_url or self.database_url

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master_key"

    @property
    def sandbox_secret_path(self) -> Path:
        return self.sandbox_secret_file or self.data_dir / "sandbox_secret"

    @property
    def event_bus(self) -> str:
        """Which stream adapter is configured: Kafka only when asked for, NATS otherwise."""
        return "kafka" if self.kafka_bootstrap else "nats"

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("KASSA_DATA_DIR") or ".kassa").resolve()
        key_file = os.environ.get("KASSA_MASTER_KEY_FILE")
        sandbox_secret = os.environ.get("KASSA_SANDBOX_SECRET_FILE")
        kafka_ca = os.environ.get("KASSA_KAFKA_CA_FILE")
        return cls(
            database_url=os.environ.get("KASSA_DATABASE_URL") or None,
            nats_url=os.environ.get("KASSA_NATS_URL") or None,
            kafka_bootstrap=os.environ.get("KASSA_KAFKA_BOOTSTRAP") or None,
            redis_url=os.environ.get("KASSA_REDIS_URL") or None,
            http_host=os.environ.get("KASSA_HTTP_HOST") or "127.0.0.1",
            http_port=_port("KASSA_HTTP_PORT", DEFAULT_HTTP_PORT, free_allowed=True),
            # At least one API worker process: with none, no process would answer.
            http_workers=_counted("KASSA_HTTP_WORKERS", 1, http_workers_max),
            data_dir=data_dir,
            admin_key=os.environ.get("KASSA_ADMIN_KEY") or None,
            log_level=os.environ.get("KASSA_LOG_LEVEL") or "INFO",
            ready_requires=_names(os.environ.get("KASSA_READY_REQUIRES"), ("database", "broker")),
            http_body_read_timeout_s=_float("KASSA_HTTP_BODY_READ_TIMEOUT_S", http_body_read_timeout_s),
            migration_database_url=os.environ.get("KASSA_MIGRATION_DATABASE_URL") or None,
            worker_database_url=os.environ.get("KASSA_WORKER_DATABASE_URL") or None,
            nats_user=os.environ.get("KASSA_NATS_USER") or None,
            nats_password=os.environ.get("KASSA_NATS_PASSWORD") or None,
            nats_token=os.environ.get("KASSA_NATS_TOKEN") or None,
            nats_creds=os.environ.get("KASSA_NATS_CREDS") or None,
            kafka_security_protocol=os.environ.get("KASSA_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT",
            kafka_sasl_mechanism=os.environ.get("KASSA_KAFKA_SASL_MECHANISM") or None,
            kafka_username=os.environ.get("KASSA_KAFKA_USERNAME") or None,
            kafka_password=os.environ.get("KASSA_KAFKA_PASSWORD") or None,
            kafka_ca_file=Path(kafka_ca).resolve() if kafka_ca else None,
            kafka_replication_factor=_counted(
                "KASSA_KAFKA_REPLICATION_FACTOR", kafka_replication_factor_default, kafka_replication_factor_max
            ),
            master_key_file=Path(key_file).resolve() if key_file else None,
            sandbox_url=os.environ.get("KASSA_SANDBOX_URL") or None,
            sandbox_secret_file=Path(sandbox_secret).resolve() if sandbox_secret else None,
            # Pending holds' timeouts in whole seconds, within what the ledger accepts.
            topup_timeout_s=_counted("KASSA_TOPUP_TIMEOUT_S", pending_topup_timeout_s, hold_timeout_s_max, " seconds"),
            withdrawal_timeout_s=_counted(
                "KASSA_WITHDRAWAL_TIMEOUT_S", pending_withdrawal_timeout_s, hold_timeout_s_max, " seconds"
            ),
            webhook_allow_private=_bool("KASSA_WEBHOOK_ALLOW_PRIVATE"),
            backup_dir=Path(os.environ.get("KASSA_BACKUP_DIR") or data_dir / "backups").resolve(),
            wal_archive=(os.environ.get("KASSA_WAL_ARCHIVE") or "on").lower() not in ("off", "0", "false", "no"),
            rate_limit_per_s=_int("KASSA_RATE_LIMIT_PER_S", rate_limit_per_s_default),
            rate_limit_burst=_int("KASSA_RATE_LIMIT_BURST", rate_limit_burst_default),
            kyc_sandbox_secret=os.environ.get("KASSA_KYC_SANDBOX_SECRET") or None,
            kyc_callback_url=os.environ.get("KASSA_KYC_CALLBACK_URL") or None,
            # Unset: None. Set, 0 is refused: it would serve on a port nobody is told.
            metrics_port=_port("KASSA_METRICS_PORT", 0) or None,
        )
