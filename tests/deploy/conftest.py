"""Fixtures of the deploy checks: the chart rendered per environment, the parsed Terraform, one checkov run."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import hcl2
import pytest
import yaml

from support import tools_k8s
from support.deploy import COMMAND_TIMEOUT_S, DOCKER, ENVIRONMENTS, TERRAFORM, Manifest, helm_template

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def helm() -> Path:
    return tools_k8s.helm()


@pytest.fixture(scope="session")
def rendered_dir(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`helm template` of the chart for each values file, one YAML stream per environment."""
    out = tmp_path_factory.mktemp("rendered")
    for env in ENVIRONMENTS:
        (out / f"{env}.yaml").write_text(helm_template(helm, env))
    return out


@pytest.fixture(scope="session")
def rendered(rendered_dir: Path) -> dict[str, list[Manifest]]:
    return {
        env: [doc for doc in yaml.safe_load_all((rendered_dir / f"{env}.yaml").read_text()) if doc]
        for env in ENVIRONMENTS
    }


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes on string literals and block labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


@pytest.fixture(scope="session")
def terraform() -> dict[Path, dict[str, Any]]:
    """Every .tf file under deploy/terraform, parsed (unparseable files fail here)."""
    parsed = {}
    for path in sorted(TERRAFORM.rglob("*.tf")):
        with path.open() as handle:
            parsed[path.relative_to(TERRAFORM)] = _unquote(hcl2.load(handle))
    return parsed


def _json_documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs, index = [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        doc, index = decoder.raw_decode(text, index)
        docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def checkov(rendered_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One checkov run (it takes seconds to start) over the rendered chart, the Dockerfile and the
    Terraform tree, copied into one directory; the report per framework."""
    scan = tmp_path_factory.mktemp("checkov")
    shutil.copytree(rendered_dir, scan / "kubernetes")
    shutil.copytree(DOCKER, scan / "docker")
    shutil.copytree(TERRAFORM, scan / "terraform")
    frameworks = ("kubernetes", "dockerfile", "terraform")
    result = subprocess.run(
        # --skip-download: no calls to the vendor's platform (guidelines, policy updates).
        [
            *tools_k8s.checkov_command(),
            "-d",
            str(scan),
            "--framework",
            *frameworks,
            "--output",
            "json",
            "--soft-fail",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reports: dict[str, dict[str, Any]] = {}
    for doc in _json_documents(result.stdout):
        for report in doc if isinstance(doc, list) else [doc]:
            reports[report["check_type"]] = report
    assert set(reports) == set(frameworks), f"checkov reported only {sorted(reports)}:\n{result.stderr}"
    return reports
