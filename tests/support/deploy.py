"""Paths and a command runner shared by the deploy checks (tests/deploy)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "kassa"
TERRAFORM = REPO / "deploy" / "terraform"
DOCKER = REPO / "deploy" / "docker"
WORKFLOWS = REPO / ".github" / "workflows"
ENVIRONMENTS = ("dev", "staging", "production")
COMMAND_TIMEOUT_S = 600

Manifest = dict[str, Any]


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure the assertion shows its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False, **kwargs)
    assert result.returncode == 0, f"{command[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def helm_template(helm: Path, env: str, *extra: str) -> str:
    """`helm template` of the chart as release `kassa` in namespace `kassa-<env>`, with that
    environment's values file and any extra arguments (`--set ...`); the YAML stream."""
    command = [str(helm), "template", "kassa", str(CHART), "--namespace", f"kassa-{env}"]
    return run([*command, "-f", str(CHART / f"values-{env}.yaml"), *extra]).stdout


def assert_checkov_clean(report: dict[str, Any]) -> None:
    """No failed check, no parsing error, something passed, and every skip says why."""
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for skipped in results.get("skipped_checks", []):
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"skip of {skipped['check_id']} on {skipped['resource']} gives no reason"
