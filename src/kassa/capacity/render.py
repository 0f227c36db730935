"""A capacity plan as Kubernetes objects and Terraform variable overrides.

Kubernetes: one CronJob per step of the plan, scheduled at the step's minute (UTC), that
patches the chart's HorizontalPodAutoscalers (`<release>-api`, `<release>-worker-consumers`)
with the step's minReplicas (and a maxReplicas no lower than that), plus the ServiceAccount and
the Role allowing exactly those two patches. A cron line names a minute of a day of a year, so
each CronJob would fire again a year later: the runbook deletes them after the event, and each
carries the instant it is for in an annotation.

Terraform: one `<step>.tfvars.json` per step with the Aurora Serverless v2 minimum capacity,
applied by the pipeline before the step's instant (Aurora scales within seconds, but an apply
takes minutes), and the last one returns to the baseline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from kassa.capacity.model import Assumptions, EventLoad, Step, UnitCost


@dataclass(frozen=True, slots=True)
class Target:
    """Where the plan applies: names must match the Helm release (deploy/helm/kassa)."""

    namespace: str = "kassa"
    release: str = "kassa"
    api_max_replicas: int = 60  # the chart's production maxReplicas, restored after an event
    worker_max_replicas: int = 24
    aurora_max_acu: float = 128.0  # deploy/terraform/envs/prod: the ceiling Aurora may scale to
    kubectl_image: str = "registry.k8s.io/kubectl:v1.32.3"
    tfvar_min_acu: str = "aurora_min_acu"  # the variable of deploy/terraform/envs/prod

    @property
    def api_hpa(self) -> str:
        return f"{self.release}-api"

    @property
    def worker_hpa(self) -> str:
        return f"{self.release}-worker-consumers"


def _labels() -> dict[str, str]:
    # Not `app.kubernetes.io/name: kassa` with the release's instance label: the chart's
    # default-deny NetworkPolicy selects those, and these pods must reach the API server.
    return {
        "app.kubernetes.io/name": "kassa-capacity",
        "app.kubernetes.io/part-of": "kassa",
        "app.kubernetes.io/component": "capacity-plan",
    }


def _stamp(step: Step) -> str:
    return step.at.astimezone(UTC).strftime("%Y%m%dt%H%Mz")


def _patch_container(name: str, hpa: str, minimum: int, maximum: int, image: str) -> dict[str, Any]:
    patch = json.dumps({"spec": {"minReplicas": minimum, "maxReplicas": max(minimum, maximum)}})
    return {
        "name": name,
        "image": image,
        "args": ["patch", "horizontalpodautoscaler", hpa, "--type=merge", "-p", patch],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }


def cron_job(step: Step, target: Target) -> dict[str, Any]:
    at = step.at.astimezone(UTC)
    c = step.capacity
    containers = [
        _patch_container("api", target.api_hpa, c.api_replicas, target.api_max_replicas, target.kubectl_image),
        _patch_container(
            "workers", target.worker_hpa, c.worker_replicas, target.worker_max_replicas, target.kubectl_image
        ),
    ]
    pod = {
        "serviceAccountName": "kassa-capacity",
        "restartPolicy": "OnFailure",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": f"kassa-capacity-{_stamp(step)}",
            "namespace": target.namespace,
            "labels": _labels(),
            "annotations": {
                "kassa.io/at": at.isoformat(),
                "kassa.io/events": ",".join(step.events) or "(baseline)",
                "kassa.io/aurora-min-acu": str(c.aurora_min_acu),
            },
        },
        "spec": {
            "schedule": f"{at.minute} {at.hour} {at.day} {at.month} *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            # Late by more than this (controller down), the step is skipped rather than run
            # out of order; the next step still restores the intended capacity.
            "startingDeadlineSeconds": 900,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 4,
                    "activeDeadlineSeconds": 600,
                    "template": {"metadata": {"labels": _labels()}, "spec": pod},
                },
            },
        },
    }


def access_objects(target: Target) -> list[dict[str, Any]]:
    meta = {"name": "kassa-capacity", "namespace": target.namespace, "labels": _labels()}
    rule = {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "resourceNames": [target.api_hpa, target.worker_hpa],
        "verbs": ["get", "patch"],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": [rule]},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kassa-capacity"},
            "subjects": [{"kind": "ServiceAccount", "name": "kassa-capacity", "namespace": target.namespace}],
        },
    ]


def render_kubernetes(steps: list[Step], target: Target) -> str:
    docs = [*access_objects(target), *(cron_job(s, target) for s in steps)]
    header = "# Rendered by `kassa capacity plan`; see docs/runbooks/live-event.md. Do not edit by hand.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False)


def render_tfvars(steps: list[Step], target: Target) -> dict[str, dict[str, float]]:
    """File name -> the Terraform variable overrides holding from that step on. Only the
    minimum moves: the maximum is the environment's ceiling (a step above it is flagged)."""
    return {f"{_stamp(s)}.tfvars.json": {target.tfvar_min_acu: s.capacity.aurora_min_acu} for s in steps}


def plan_document(
    loads: list[EventLoad], steps: list[Step], cost: UnitCost, assumptions: Assumptions, target: Target
) -> dict[str, Any]:
    """The whole plan, for people and for review: inputs, per-event load, the timeline."""
    return {
        "unit_cost_cpu_ms_per_transfer": asdict(cost),
        "assumptions": asdict(assumptions),
        "target": asdict(target),
        "events": [
            {
                "name": load.event.name,
                "start": load.event.start.astimezone(UTC).isoformat(),
                "end": load.event.end.astimezone(UTC).isoformat(),
                "expected_audience": load.event.expected_audience,
                "purchases": load.purchases,
                "peak_purchases_per_s": round(load.peak_purchases_per_s, 3),
                "gross_minor": load.gross_minor,
                "currency": load.event.currency,
            }
            for load in loads
        ],
        "steps": [
            {"at": s.at.astimezone(UTC).isoformat(), "events": list(s.events)}
            | {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(s.capacity).items()}
            for s in steps
        ],
    }


__all__ = ["Target", "access_objects", "cron_job", "plan_document", "render_kubernetes", "render_tfvars"]
