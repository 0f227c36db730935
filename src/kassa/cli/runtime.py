"""Where a running `kassa up` left its URLs, so other commands find the embedded services."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kassa.store.embedded import write_private

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.settings import Settings


def runtime_file(settings: Settings) -> Path:
    return settings.data_dir / "runtime.json"


def write_runtime(settings: Settings, values: dict[str, Any]) -> None:
    path = runtime_file(settings)
    # It holds the roles' database URLs with their passwords: never readable by others, not even
    # for the moment between writing and a chmod.
    write_private(path, json.dumps(values, indent=2))


def read_runtime(settings: Settings) -> dict[str, Any]:
    path = runtime_file(settings)
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def database_url(settings: Settings) -> str | None:
    """The application role's database: configured, else the one a running `kassa up` started."""
    url = settings.database_url or read_runtime(settings).get("database_url")
    return str(url) if url else None


def migration_database_url(settings: Settings) -> str | None:
    """The schema owner's database (`kassa migrate`): configured, else a running `kassa up`'s."""
    url = settings.migration_url or read_runtime(settings).get("migration_database_url")
    return str(url) if url else None


def worker_database_url(settings: Settings) -> str | None:
    """The event workers' database (`kassa events`): configured, else a running `kassa up`'s."""
    url = settings.worker_url or read_runtime(settings).get("worker_database_url")
    return str(url) if url else None
