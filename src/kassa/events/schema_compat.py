"""Backward-compatibility check of the event JSON Schemas (`python -m kassa.events.schema_compat`).

Baseline: `schemas/published/` holds a copy of every schema version that has been released.
Each one must still exist in `schemas/` and may only change compatibly:

- breaking: removing a property, changing its type/format/pattern/const/bounds, making a
  property required, dropping one from `required`, removing an enum value, closing
  `additionalProperties`, removing a published version;
- compatible: adding an optional property, adding an enum value (consumers must tolerate
  unknown values), editing titles, descriptions and examples.

A breaking change needs a new version file (TransferPosted.v2.json). `--update` records new
versions and compatible edits into the baseline, and refuses while anything is breaking, so the
baseline can never be "blessed" past an incompatible change. The check also fails when a schema
is not in the baseline yet, so that a new version cannot ship unrecorded.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
BASELINE_DIR = SCHEMAS_DIR / "published"
_NAME = re.compile(r"[A-Za-z]+\.v[1-9][0-9]*\.json")  # used with fullmatch
# Keywords whose any change narrows or reinterprets what a field may hold.
_EXACT = (
    "type",
    "format",
    "pattern",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "multipleOf",
    "minItems",
    "maxItems",
    "$ref",
)


@dataclass(frozen=True, slots=True)
class Report:
    breaking: list[str]
    unrecorded: list[str]

    @property
    def ok(self) -> bool:
        return not self.breaking and not self.unrecorded


def load_dir(directory: Path) -> dict[str, dict[str, Any]]:
    """Schemas in `directory` by name (`TransferPosted.v1`)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        if _NAME.fullmatch(path.name):
            found[path.name.removesuffix(".json")] = json.loads(path.read_text())
    return found


def _norm(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value


def breaking_changes(old: dict[str, Any], new: dict[str, Any], path: str = "$") -> list[str]:
    """Why `new` cannot replace `old` without a new version (empty when compatible)."""
    problems = [
        f"{path}: '{key}' changed from {old.get(key)!r} to {new.get(key)!r}"
        for key in _EXACT
        if _norm(old.get(key)) != _norm(new.get(key))
    ]
    if "enum" in old or "enum" in new:
        removed = set(map(json.dumps, old.get("enum", []))) - set(map(json.dumps, new.get("enum", [])))
        if "enum" not in old:
            problems.append(f"{path}: enum added (narrows accepted values)")
        elif "enum" not in new:
            problems.append(f"{path}: enum removed")
        elif removed:
            problems.append(f"{path}: enum values removed: {sorted(removed)}")
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    problems += [f"{path}: '{p}' made required" for p in sorted(new_required - old_required)]
    problems += [f"{path}: '{p}' no longer required" for p in sorted(old_required - new_required)]
    if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
        problems.append(f"{path}: additionalProperties closed")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_sub in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: removed")
        else:
            problems += breaking_changes(old_sub, new_props[name], f"{path}.{name}")
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        problems += breaking_changes(old["items"], new["items"], f"{path}[]")
    return problems


def check(current: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]) -> Report:
    breaking: list[str] = []
    for name, old in sorted(baseline.items()):
        if name not in current:
            breaking.append(f"{name}: published version removed")
        else:
            breaking += [f"{name} {p}" for p in breaking_changes(old, current[name])]
    unrecorded = sorted(set(current) - set(baseline))
    return Report(breaking, unrecorded)


def update_baseline(schemas: Path, baseline: Path) -> Report:
    """Record current schemas as published, unless a change is breaking."""
    report = check(load_dir(schemas), load_dir(baseline))
    if report.breaking:
        return report
    baseline.mkdir(parents=True, exist_ok=True)
    for path in sorted(schemas.glob("*.json")):
        if _NAME.fullmatch(path.name):
            shutil.copyfile(path, baseline / path.name)
    return Report([], [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kassa.events.schema_compat",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--schemas", type=Path, default=SCHEMAS_DIR)
    parser.add_argument("--baseline", type=Path, default=BASELINE_DIR)
    parser.add_argument("--update", action="store_true", help="record new and compatibly changed schemas")
    args = parser.parse_args(argv)
    if args.update:
        report = update_baseline(args.schemas, args.baseline)
    else:
        report = check(load_dir(args.schemas), load_dir(args.baseline))
    for problem in report.breaking:
        sys.stderr.write(f"breaking: {problem}\n")
    for name in report.unrecorded:
        sys.stderr.write(f"unrecorded: {name} is not in {args.baseline}; run with --update\n")
    if report.ok:
        sys.stdout.write("event schemas: backward compatible\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
