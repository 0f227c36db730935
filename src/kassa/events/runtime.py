"""Running the event roles in one process: relay, consumers and the webhook delivery loop.

Each piece runs under a supervisor that restarts it with a capped backoff when it fails
(broker or database away), so one failing consumer never takes the others down. All stop
together, cleanly, when `stop` is set (SIGTERM/SIGINT in `kassa worker`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kassa.events import limits
from kassa.events.consumer import ConsumerRunner
from kassa.events.relay import Relay

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.events.bus.base import EventBus
    from kassa.events.registry import EventWiring
    from kassa.store.pool import Pool

log = logging.getLogger(__name__)

ROLES = ("relay", "consumers", "all")
_STABLE_S = 30.0  # a piece that ran this long before failing starts a new outage
_STILL_FAILING_LOG_S = 30.0  # during an outage, one reminder line this often


async def supervise(name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run `run` until `stop`, restarting it with a capped backoff. An outage is logged once
    with its traceback, then only every `_STILL_FAILING_LOG_S` (not on every retry), and once
    more when the piece has run cleanly for a while again."""
    loop = asyncio.get_running_loop()
    failures = 0
    last_logged = 0.0
    while not stop.is_set():
        started = loop.time()
        try:
            await run()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if failures and loop.time() - started >= _STABLE_S:
                log.info("%s recovered after %d failures", name, failures)
                failures = 0
            failures += 1
            if failures == 1:
                log.exception("%s failed; restarting with backoff", name)
                last_logged = loop.time()
            elif loop.time() - last_logged >= _STILL_FAILING_LOG_S:
                log.warning("%s still failing (%d in a row): %s: %s", name, failures, type(exc).__name__, exc)
                last_logged = loop.time()
        if stop.is_set():
            return
        delay = min(limits.relay_retry_delay_s_max, 0.1 * 2 ** min(failures, 8))
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass


async def run_roles(role: str, pool: Pool, bus: EventBus, stop: asyncio.Event, wiring: EventWiring) -> None:
    """Run `role` ("relay", "consumers" or "all") until `stop` is set: the relay, the wired
    handlers, and (for "all") the wired background loops."""
    jobs: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if role in ("relay", "all"):
        relay = Relay(pool, bus)
        jobs.append(("relay", lambda: relay.run(stop)))
    if role in ("consumers", "all"):
        for handler in wiring.handlers:
            runner = ConsumerRunner(pool, bus, handler)
            jobs.append((f"consumer {handler.name}", lambda r=runner: r.run(stop)))  # type: ignore[misc]
    if role == "all":
        for name, loop in wiring.loops:
            jobs.append((name, lambda loop=loop: loop(pool, stop)))  # type: ignore[misc]
    log.info("worker %s running: %s", role, ", ".join(name for name, _ in jobs) or "nothing")
    await asyncio.gather(*(supervise(name, job, stop) for name, job in jobs))
