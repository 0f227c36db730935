"""A `kassa up` killed with SIGKILL leaves no API, worker or NATS process behind, and the next
`kassa up` on the same data directory starts cleanly (taking over the orphaned PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from kassa.store.embedded import free_port
from support.server import start_platform, stop_platform

pytestmark = pytest.mark.e2e


def _processes_of(data_dir: Path) -> list[str]:
    """Command lines of the processes started for `data_dir` (they inherit KASSA_DATA_DIR)."""
    marker = f"KASSA_DATA_DIR={data_dir}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ:
            found.append(cmdline)
    return found


def test_a_killed_kassa_up_leaves_no_orphans_and_restarts_on_the_same_data_dir() -> None:
    root = Path(tempfile.mkdtemp(prefix="kassa-restart-"))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    data_dir = root / "data"
    first = start_platform(data_dir, free_port())
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    deadline = time.monotonic() + 10
    while True:
        # PostgreSQL is daemonized by pg_ctl and is expected to survive; the next start takes it over.
        leftovers = [c for c in _processes_of(data_dir) if "postgres" not in c]
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not leftovers, leftovers  # the API, the worker and nats-server died with their parent
    second = start_platform(data_dir, free_port())
    try:
        assert httpx.get(second.base_url + "/readyz", timeout=5).status_code == 200
        assert (data_dir / "up.pid").read_text().strip() == str(second.process.pid)
    finally:
        assert stop_platform(second) == 0
    assert not (data_dir / "up.pid").exists()
    shutil.rmtree(root, ignore_errors=True)
