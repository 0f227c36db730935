"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """A `preexec_fn`: have Linux send SIGTERM to the child when its parent dies, even by SIGKILL,
    so a killed `kassa up` leaves no API, worker or NATS process behind. No-op elsewhere."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tie_to_parent(parent_pid: int) -> None:
    """Called first thing in a process that was started by a library we do not control (the HTTP
    server's worker processes): SIGTERM when `parent_pid` dies, and exit at once if it already
    has (the death signal only covers deaths after the prctl call)."""
    die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)
