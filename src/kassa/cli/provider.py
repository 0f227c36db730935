"""`kassa provider sandbox`: the built-in sandbox payment provider as its own HTTP service.

`kassa up` starts it as a supervised child on a free port; the test fixtures do the same. It
calls back kassa at `--callback-url`, signing with the secret in `--secret-file`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from kassa.payments.adapters.sandbox_server import CALLBACK_URL_ENV, SECRET_FILE_ENV

if TYPE_CHECKING:
    import argparse

_MAIN_PID_ENV = "KASSA_SANDBOX_MAIN_PID"


def worker_app() -> Any:
    """The app factory of granian's worker: tied to the main process first (as `kassa api`'s)."""
    from kassa.payments.adapters.sandbox_server import create_app
    from kassa.shared.processes import tie_to_parent

    main_pid = os.environ.get(_MAIN_PID_ENV)
    if main_pid:
        tie_to_parent(int(main_pid))
    return create_app()


def _port(raw: str) -> int:
    """`--port`: a real TCP port; 0 would serve on one that kassa's KASSA_SANDBOX_URL cannot name."""
    import argparse

    from kassa.settings import SettingsError, tcp_port

    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    try:
        return tcp_port("--port", value)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("provider", help="run a built-in payment provider")
    providers = parser.add_subparsers(dest="provider", required=True)
    sandbox = providers.add_parser("sandbox", help="the sandbox provider (test cards, async signed callbacks)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=_port, required=True)
    sandbox.add_argument("--callback-url", required=True, help="kassa's POST /v1/providers/sandbox/callbacks")
    sandbox.add_argument("--secret-file", required=True, help="the shared signing secret (whsec_…)")
    sandbox.set_defaults(func=run_sandbox)


def run_sandbox(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from kassa.shared.limits import http_worker_stop_timeout_s

    # The app factory runs in granian's worker process and reads its settings from here.
    os.environ[CALLBACK_URL_ENV] = args.callback_url
    os.environ[SECRET_FILE_ENV] = args.secret_file
    os.environ[_MAIN_PID_ENV] = str(os.getpid())
    server = Granian(
        "kassa.cli.provider:worker_app",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,  # its state lives in memory: one process
        loop=Loops.uvloop,
        log_enabled=False,
        # As `kassa api`'s: a worker still stopping after this is killed, so the provider exits
        # when its `kassa up` dies (seen: one alive 11 minutes after its parent was SIGKILLed).
        workers_kill_timeout=http_worker_stop_timeout_s,
    )
    server.serve()
    return 0
