"""The process's own CPU and memory, and its database pool's saturation, as Prometheus series.

prometheus_client's process collector does not work in multiprocess mode (the API's /metrics
aggregates files written by every process), so each kassa process samples itself on a daemon
thread and writes ordinary multiprocess-safe series: CPU as a counter advanced by the delta since
the last sample, memory and pool gauges summed over live processes.
"""

from __future__ import annotations

import os
import resource
import threading
from typing import TYPE_CHECKING

from kassa.observability import metrics
from kassa.shared.limits import process_sample_interval_s

if TYPE_CHECKING:
    import asyncpg

__all__ = ["sample", "start_sampler", "watch_pool"]

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_state: dict[str, float] = {"cpu_s": 0.0}
_pools: list[asyncpg.Pool] = []
_started: list[threading.Thread] = []


def watch_pool(pool: asyncpg.Pool) -> None:
    """Include `pool` in the `kassa_db_pool_connections` gauges of this process."""
    _pools.append(pool)


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, in KiB on Linux


def sample(role: str) -> None:
    """Update this process's series once."""
    times = os.times()
    cpu_s = times.user + times.system
    metrics.process_cpu.labels(role).inc(max(0.0, cpu_s - _state["cpu_s"]))
    _state["cpu_s"] = cpu_s
    metrics.process_memory.labels(role).set(_resident_bytes())
    if _pools:
        size = sum(p.get_size() for p in _pools)
        idle = sum(p.get_idle_size() for p in _pools)
        metrics.db_pool.labels("size").set(size)
        metrics.db_pool.labels("idle").set(idle)
        metrics.db_pool.labels("in_use").set(size - idle)
        metrics.db_pool.labels("max").set(sum(p.get_max_size() for p in _pools))


def start_sampler(role: str) -> None:
    """Sample now and then every `process_sample_interval_s` on a daemon thread (once per process)."""
    if _started and _started[0].is_alive():
        return
    sample(role)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(process_sample_interval_s):
            sample(role)

    thread = threading.Thread(target=run, name="kassa-process-sampler", daemon=True)
    thread.start()
    _started[:] = [thread]
