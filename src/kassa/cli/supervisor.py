"""Supervision of `kassa up`'s children: a crashed child is restarted with backoff, never a reason
to take the platform down.

Each child (the API role, the worker role, the embedded NATS, the embedded PostgreSQL) is a
`Supervised` with `alive()`, `start()` and `cleanup()`. `Supervisor.tick()` is called a few
times a second by `kassa up`'s main loop: a child found dead is logged once, its leftovers are
cleaned up (an API child's whole process group, so an orphaned HTTP worker can never keep the
port), and it is started again after `restart_delay_s(failures)`. A child that stayed up for
`child_stable_s` has its failure count reset, so a crash a day never backs off for long.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kassa.shared.limits import child_restart_delay_s_max, child_stable_s
from kassa.shared.processes import die_with_parent

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.embedded import EmbeddedPostgres

_RESTART_DELAY_S_BASE = 0.25
_STOP_TIMEOUT_S = 15.0


def restart_delay_s(failures: int) -> float:
    """0.25 s after the first crash, doubling per crash in a row, capped."""
    return float(min(child_restart_delay_s_max, _RESTART_DELAY_S_BASE * 2 ** max(0, failures - 1)))


class Supervised(Protocol):
    name: str

    def alive(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def cleanup(self) -> None: ...
    def describe_exit(self) -> str: ...


@dataclass
class ChildProcess:
    """A `kassa <role>` child in a process group of its own (so its helpers die with it)."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        # A process group of its own (the group id is the child's pid), so `cleanup` can reach
        # every process the child started; SIGTERM to it when `kassa up` dies.
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            self.command, env=self.env, preexec_fn=die_with_parent, process_group=0
        )

    def describe_exit(self) -> str:
        code = None if self.process is None else self.process.returncode
        if code is None:
            return "did not start"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def cleanup(self) -> None:
        """Kill whatever is left of the dead child's process group (e.g. HTTP workers whose
        main process died): nothing of the old generation may keep the port."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.cleanup()


@dataclass
class _State:
    failures: int = 0
    started_at: float = 0.0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._say = say
        self._clock = clock
        self.children: list[Supervised] = []
        self._state: dict[str, _State] = {}
        self.restarts: dict[str, int] = {}

    def add(self, child: Supervised) -> None:
        """Register a child that is already started (or start it now if it is not alive)."""
        if not child.alive():
            child.start()
        self.children.append(child)
        self._state[child.name] = _State(started_at=self._clock())
        self.restarts[child.name] = 0

    def tick(self) -> None:
        now = self._clock()
        for child in self.children:
            state = self._state[child.name]
            if state.restart_at is None:
                if child.alive():
                    if state.failures and now - state.started_at >= child_stable_s:
                        state.failures = 0
                    continue
                state.failures += 1
                delay = restart_delay_s(state.failures)
                self._say(f"{child.name} {child.describe_exit()}; restarting in {delay:.2f} s")
                child.cleanup()
                state.restart_at = now + delay
            if now >= state.restart_at:
                self._restart(child, state, now)

    def _restart(self, child: Supervised, state: _State, now: float) -> None:
        try:
            child.start()
        except Exception as exc:  # noqa: BLE001 - any failure to start is retried with more backoff
            state.failures += 1
            delay = restart_delay_s(state.failures)
            self._say(f"{child.name} failed to start ({type(exc).__name__}: {exc}); retrying in {delay:.2f} s")
            state.restart_at = now + delay
            return
        state.restart_at = None
        state.started_at = now
        self.restarts[child.name] += 1
        self._say(f"{child.name} restarted")

    def stop(self) -> None:
        """Stop every child, in reverse order of registration (API and workers before the stores)."""
        processes = [c for c in reversed(self.children) if isinstance(c, ChildProcess)]
        for child in processes:
            child.stop()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for child in processes:
            child.wait_stopped(deadline)
        for other in reversed(self.children):
            if not isinstance(other, ChildProcess):
                other.stop()


@dataclass
class EmbeddedNatsChild:
    """The embedded NATS (its process is ours: `EmbeddedNats.running` tells)."""

    server: EmbeddedNats
    name: str = "nats"

    def alive(self) -> bool:
        return self.server.running

    def start(self) -> None:
        self.server.start()  # same port and store as before: clients reconnect by themselves

    def stop(self) -> None:
        self.server.stop()

    def cleanup(self) -> None:
        self.server.kill()

    def describe_exit(self) -> str:
        return "exited"


@dataclass
class EmbeddedPostgresChild:
    """The embedded PostgreSQL. pg_ctl daemonizes the postmaster, so liveness is read from its
    pid file (cheap enough to check several times a second)."""

    server: EmbeddedPostgres
    name: str = "postgresql"

    def alive(self) -> bool:
        try:
            pid = int((self.server.data / "postmaster.pid").read_text().split("\n", 1)[0])
            return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False

    def start(self) -> None:
        # The same port: the API's and workers' pools reconnect to it. A start right after a
        # crash can fail while the dead postmaster's backends still exit; the supervisor retries.
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def cleanup(self) -> None:
        """Nothing to do: PostgreSQL's own crash recovery runs on the next start."""

    def describe_exit(self) -> str:
        return "is not running"
