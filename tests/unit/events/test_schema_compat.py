"""The schema compatibility check passes compatible edits and fails breaking ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kassa.events.schema_compat import check, load_dir, main, update_baseline

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
BASELINE = FIXTURES / "baseline"


def _report(variant: str) -> list[str]:
    return check(load_dir(FIXTURES / variant), load_dir(BASELINE)).breaking


def test_the_committed_event_schemas_are_compatible_with_the_published_baseline() -> None:
    assert main([]) == 0


def test_adding_an_optional_field_an_enum_value_or_a_description_is_compatible() -> None:
    assert _report("compatible") == []


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("breaking_removed", "$.amount: removed"),
        ("breaking_required", "'note' made required"),
        ("breaking_retyped", "$.amount: 'type' changed"),
        ("breaking_retyped", "enum values removed"),
    ],
)
def test_a_breaking_change_to_a_published_version_fails(variant: str, expected: str) -> None:
    breaking = _report(variant)
    assert any(expected in problem for problem in breaking), breaking
    assert main(["--schemas", str(FIXTURES / variant), "--baseline", str(BASELINE)]) == 1


def test_a_breaking_change_under_a_new_version_passes_once_recorded(tmp_path: Path) -> None:
    baseline = tmp_path / "published"
    shutil.copytree(BASELINE, baseline)
    args = ["--schemas", str(FIXTURES / "new_version"), "--baseline", str(baseline)]
    assert main(args) == 1  # Thing.v2 is not recorded yet
    assert main([*args, "--update"]) == 0
    assert main(args) == 0
    assert json.loads((baseline / "Thing.v2.json").read_text())["properties"]["amount"]["type"] == "string"


def test_update_refuses_to_record_a_breaking_change(tmp_path: Path) -> None:
    baseline = tmp_path / "published"
    shutil.copytree(BASELINE, baseline)
    report = update_baseline(FIXTURES / "breaking_removed", baseline)
    assert report.breaking
    assert load_dir(baseline) == load_dir(BASELINE)


def test_removing_a_published_version_fails(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    assert check(load_dir(tmp_path / "schemas"), load_dir(BASELINE)).breaking == ["Thing.v1: published version removed"]
