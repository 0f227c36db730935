"""Reading rendered manifests and the chart's values (tests/deploy)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from support.deploy import CHART, REPO, Manifest

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKLOAD_KINDS = {"Deployment", "Job", "Pod"}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of a values file over the defaults: maps merge deeply, null deletes a key."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def values(env: str) -> dict[str, Any]:
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return merged(base, yaml.safe_load((CHART / f"values-{env}.yaml").read_text()))


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Manifest], kind: str, name: str) -> Manifest:
    (doc,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def pod_spec(doc: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


def pod_labels(doc: Manifest) -> dict[str, str]:
    labels: dict[str, str] = (doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"])[
        "labels"
    ]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and the In/NotIn expressions the chart uses) picks `labels`."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] in ("In", "NotIn"), expression
        if (labels.get(expression["key"]) in expression["values"]) != (expression["operator"] == "In"):
            return False
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def workloads(docs: list[Manifest]) -> Iterator[Manifest]:
    return (d for d in docs if d["kind"] in WORKLOAD_KINDS)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def kubernetes_version() -> str:
    """The EKS version the Terraform stack deploys: the schemas to validate against."""
    text = (REPO / "deploy" / "terraform" / "modules" / "stack" / "variables.tf").read_text()
    match = re.search(r'variable "kubernetes_version" \{.*?default\s*=\s*"(\d+\.\d+)"', text, re.S)
    assert match, "modules/stack declares the EKS version"
    return match.group(1) + ".0"
