"""Typed failures of backups, restores and replication (used by the CLI and the drill).

KassaError
└── RecoveryError              recovery_error
    ├── BackupFailed           backup_failed: pg_basebackup or the archive check failed
    ├── NoBaseBackup           no_base_backup: none finished before the recovery target
    ├── RestoreFailed          restore_failed: the restored server did not reach the target
    └── ReplicationFailed      replication_failed: a standby did not stream or promote in time
"""

from __future__ import annotations

from kassa.shared.errors import KassaError


class RecoveryError(KassaError):
    code = "recovery_error"
    status = 500
    title = "Backup or recovery failed"


class BackupFailed(RecoveryError):
    code = "backup_failed"
    title = "Base backup failed"


class NoBaseBackup(RecoveryError):
    code = "no_base_backup"
    title = "No base backup finished before the recovery target"


class RestoreFailed(RecoveryError):
    code = "restore_failed"
    title = "Restore did not reach the recovery target"


class ReplicationFailed(RecoveryError):
    code = "replication_failed"
    title = "Standby did not stream or promote in time"


__all__ = ["BackupFailed", "NoBaseBackup", "RecoveryError", "ReplicationFailed", "RestoreFailed"]
