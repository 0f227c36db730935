"""The GitHub workflows pass actionlint and do what CI, release and preview environments promise."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from support import tools_k8s
from support.deploy import WORKFLOWS, run

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.deploy

BROKEN = """
on: push
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ github.nope.nope }}
        with: {a: 1}
"""


def load(name: str) -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return doc


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    on: dict[str, Any] = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads `on` as true
    return on


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(json.dumps(step) for step in job["steps"])


def actionlint(*paths: str) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = json.loads(run([*tools_k8s.actionlint_command(), *paths]).stdout)
    return findings


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {p.rsplit("/", 1)[1] for p in files} == {"ci.yml", "release.yml", "preview.yml"}
    assert actionlint(*files) == []


def test_actionlint_does_report_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    kinds = {f["kind"] for f in actionlint(str(broken))}
    assert kinds  # the linter really runs: a typo'd context and a stray `with` are caught


def test_every_workflow_starts_from_read_only_permissions() -> None:
    for name in ("ci.yml", "release.yml", "preview.yml"):
        assert load(name)["permissions"] == {"contents": "read"}, name


def test_ci_runs_the_checks_the_suite_and_builds_and_scans_the_image() -> None:
    ci = load("ci.yml")
    assert set(triggers(ci)) == {"push", "pull_request"}
    jobs = ci["jobs"]
    assert "make check" in steps_text(jobs["check"])
    assert "make test" in steps_text(jobs["test"])
    assert "pytest tests/deploy" in steps_text(jobs["deploy-checks"])
    image = steps_text(jobs["image"])
    assert "deploy/docker/Dockerfile" in image and "trivy-action" in image and "--read-only" in image


def test_release_pushes_the_image_and_chart_and_rolls_out_by_digest() -> None:
    release = load("release.yml")
    assert triggers(release)["push"]["tags"]
    jobs = release["jobs"]
    assert "docker/build-push-action" in steps_text(jobs["image"])
    assert "helm push" in steps_text(jobs["chart"])
    deploy = jobs["deploy"]
    assert set(deploy["needs"]) == {"image", "chart"}
    assert "image.digest" in steps_text(deploy) and "--atomic" in steps_text(deploy)
    environments = [t["environment"] for t in deploy["strategy"]["matrix"]["target"]]
    assert environments == ["staging", "production"] and deploy["strategy"]["max-parallel"] == 1


def test_a_preview_per_pull_request_is_installed_smoke_tested_and_torn_down_on_close() -> None:
    preview = load("preview.yml")
    assert set(triggers(preview)["pull_request"]["types"]) == {"opened", "synchronize", "reopened", "closed"}
    assert "github.event.pull_request.number" in preview["env"]["NAMESPACE"]
    deploy, teardown = preview["jobs"]["deploy"], preview["jobs"]["teardown"]
    assert "github.event.action != 'closed'" in deploy["if"]
    assert "github.event.action == 'closed'" in teardown["if"]
    installed = steps_text(deploy)
    assert "helm upgrade --install kassa deploy/helm/kassa" in installed and "helm test kassa" in installed
    assert 'kubectl delete namespace \\"$NAMESPACE\\"' in steps_text(teardown)
