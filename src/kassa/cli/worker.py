"""`kassa worker relay|consumers|all`: the event roles, in one process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from kassa.settings import Settings
from kassa.shared.limits import worker_stop_timeout_s

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("kassa.worker")
# Exit status of a worker that did not finish its graceful stop in time.
STOP_TIMEOUT_EXIT = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("worker", help="run the relay and/or the event consumers")
    parser.add_argument(
        "role",
        choices=("relay", "consumers", "all"),
        help="relay: outbox to stream; consumers: registered handlers; all: both + webhooks",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from kassa import observability
    from kassa.observability import logging as jsonlog

    jsonlog.configure(settings.log_level)
    observability.setup("worker")
    if not settings.worker_url:
        sys.stderr.write("KASSA_WORKER_DATABASE_URL (or KASSA_DATABASE_URL) is not set\n")
        return 2
    if settings.metrics_port is not None:
        from kassa.observability import metrics

        metrics.serve(settings.metrics_port)
    import uvloop

    return uvloop.run(_main(args.role, settings))


def _stopping(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    """SIGTERM/SIGINT: stop gracefully, but never hang on it. A role stuck in an await that
    never ends (a broker that stopped answering, a pool that waits for a connection) would keep
    the process alive forever, and one whose `kassa up` was SIGKILLed has nobody left to kill it
    (seen: an idle orphan `kassa worker all` after its parent died). Exiting at once is safe: every
    effect is in a database transaction, which PostgreSQL rolls back, and a relay batch left in
    flight is republished by the next leader. A second signal exits at once."""
    if stop.is_set():
        _exit_now("a second stop signal")
    stop.set()
    loop.call_later(worker_stop_timeout_s, _exit_now, f"still stopping {worker_stop_timeout_s:g} s after the signal")


def _exit_now(why: str) -> None:
    log.error("kassa worker: %s; exiting without a graceful stop", why)
    logging.shutdown()
    os._exit(STOP_TIMEOUT_EXIT)


async def _can_work_across_tenants(pool: Any) -> bool:
    from kassa.store.rls import cross_tenant_refusal

    async with pool.acquire() as conn:
        refusal = await cross_tenant_refusal(conn)
    if refusal is not None:
        sys.stderr.write(refusal + "\n")
    return refusal is None


async def _connected_unless_stopped(bus: Any, stop: asyncio.Event) -> bool:
    """Connect to the broker, unless told to stop first. The NATS client retries a refused first
    connection forever, so a worker whose embedded broker died with its `kassa up` would
    otherwise outlive the SIGTERM it got with it."""
    connecting = asyncio.ensure_future(bus.connect())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        return False
    connecting.result()  # a failed connection raises here, as before
    return True


async def _main(role: str, settings: Settings) -> int:
    from kassa.bootstrap import event_wiring
    from kassa.events.bus import create_bus
    from kassa.events.runtime import run_roles
    from kassa.shared.heap import freeze_startup_heap
    from kassa.store.pool import create_pool

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stopping, stop, loop)
    assert settings.worker_url is not None  # checked by run()
    # The event runtime is cross-tenant: it connects as the worker role (store.rls).
    pool = await create_pool(settings.worker_url)
    if not await _can_work_across_tenants(pool):
        await pool.close()
        return 2
    bus = create_bus(settings)
    try:
        if await _connected_unless_stopped(bus, stop):
            freeze_startup_heap()
            await run_roles(role, pool, bus, stop, event_wiring())
    finally:
        await bus.close()
        await pool.close()
    return 0
