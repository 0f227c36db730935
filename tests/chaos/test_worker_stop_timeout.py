"""A worker whose role never finishes stopping exits anyway, soon after SIGTERM.

A `kassa worker` whose `kassa up` is SIGKILLed gets SIGTERM from the kernel (the parent-death
signal) and nobody else: if a role hangs in an await that never ends, nothing would ever kill it.
The relay's test pause hook hangs exactly like that, after publishing and before marking.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kassa.cli.worker import STOP_TIMEOUT_EXIT
from kassa.events.relay import PAUSE_AFTER_PUBLISH_ENV
from kassa.shared.limits import worker_stop_timeout_s
from support.events import new_tenant, unpublished, write_outbox

if TYPE_CHECKING:
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos


def _spawn(pg_url: str, nats_url: str, marker: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KASSA_DATABASE_URL": pg_url,
        "KASSA_NATS_URL": nats_url,
        "KASSA_LOG_LEVEL": "WARNING",
        PAUSE_AFTER_PUBLISH_ENV: str(marker),
    }
    env.pop("KASSA_KAFKA_BOOTSTRAP", None)
    return subprocess.Popen([sys.executable, "-m", "kassa.cli.main", "worker", "relay"], env=env)


async def test_a_worker_stuck_in_a_role_exits_after_the_stop_timeout(
    pool: Pool, pg_url: str, nats_server: EmbeddedNats
) -> None:
    tenant = new_tenant()
    await write_outbox(pool, tenant, ["a"], per_key=2)
    marker = Path(tempfile.mkdtemp(prefix="kassa-worker-stop-")) / "published"
    worker = _spawn(pg_url, nats_server.url, marker)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert worker.poll() is None, "the relay exited before reaching its pause"
            assert time.monotonic() < deadline, "the relay never reached its pause"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        # The relay hangs forever in its pause: only the stop timeout ends the process.
        status = worker.wait(worker_stop_timeout_s + 20)
        assert status == STOP_TIMEOUT_EXIT
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # Killed between publish and mark: the batch is still unmarked, for the next leader to republish.
    assert await unpublished(pool, tenant) == 2
