"""`kassa slo generate` and `kassa dashboards generate`: observability as code.

Both write committed files from their sources (the SLO file, the dashboard definitions in
`kassa.observability.dashboards`); `--check` only compares and fails when the committed files
are stale, which is what the tests and CI run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

DEFAULT_SPEC = Path("deploy/observability/slo.yaml")
DEFAULT_RULES = Path("deploy/observability/prometheus/kassa-slo.rules.yaml")
DEFAULT_DASHBOARDS = Path("deploy/observability/dashboards")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slo = sub.add_parser("slo", help="SLOs as code").add_subparsers(dest="slo_command", required=True)
    gen = slo.add_parser("generate", help="write the Prometheus recording and alerting rules from the SLO file")
    gen.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help=f"SLO file (default {DEFAULT_SPEC})")
    gen.add_argument("--out", type=Path, default=DEFAULT_RULES, help=f"rule file (default {DEFAULT_RULES})")
    gen.add_argument("--check", action="store_true", help="fail if the rule file is not what would be written")
    gen.set_defaults(func=_slo_generate)
    dash = sub.add_parser("dashboards", help="Grafana dashboards as code").add_subparsers(
        dest="dashboards_command", required=True
    )
    dgen = dash.add_parser("generate", help="write the Grafana dashboard JSON files")
    dgen.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="SLO file (the SLO burn dashboard reads it)")
    dgen.add_argument("--out", type=Path, default=DEFAULT_DASHBOARDS, help=f"directory (default {DEFAULT_DASHBOARDS})")
    dgen.add_argument("--check", action="store_true", help="fail if a dashboard file is stale")
    dgen.set_defaults(func=_dashboards_generate)


def _write_or_check(files: dict[Path, str], check: bool) -> int:
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if check:
        for path in stale:
            sys.stderr.write(f"{path} is stale: run `kassa slo generate` / `kassa dashboards generate`\n")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


def _slo_generate(args: argparse.Namespace) -> int:
    from kassa.observability import slo

    spec = slo.load(args.spec)
    return _write_or_check({args.out: slo.render(slo.generate(spec))}, args.check)


def _dashboards_generate(args: argparse.Namespace) -> int:
    from kassa.observability import dashboards, slo

    built: dict[str, Any] = dashboards.build_all(slo.load(args.spec))
    return _write_or_check({args.out / name: text for name, text in dashboards.render_all(built).items()}, args.check)
