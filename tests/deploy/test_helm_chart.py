"""The Helm chart lints, renders to schema-valid manifests per environment, passes checkov, and keeps its promises."""

from __future__ import annotations

import re
import tarfile
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest
import yaml

from support.chart import (
    env_of,
    kubernetes_version,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    selects,
    values,
    workloads,
)
from support.deploy import CHART, ENVIRONMENTS, Manifest, assert_checkov_clean, run

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.deploy

# Custom resources whose schemas kubernetes-validate does not carry (test_helm_monitoring checks them).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ExternalSecret"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_helm_lint_passes_strictly_for_each_environment(helm: Path, env: str) -> None:
    run([str(helm), "lint", "--strict", str(CHART), "-f", str(CHART / f"values-{env}.yaml")])


def test_the_chart_packages_as_the_release_workflow_does(helm: Path, tmp_path: Path) -> None:
    run(
        [
            str(helm),
            "package",
            str(CHART),
            "--version",
            "1.2.3",
            "--app-version",
            "1.2.3",
            "--destination",
            str(tmp_path),
        ]
    )
    (package,) = tmp_path.glob("kassa-1.2.3.tgz")
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
    assert {"kassa/Chart.yaml", "kassa/values-production.yaml", "kassa/files/rules/kassa-platform.yaml"} <= names


def test_rendered_manifests_match_the_kubernetes_schemas_of_the_eks_version(
    rendered: dict[str, list[Manifest]],
) -> None:
    version = kubernetes_version()
    unvalidated: set[str] = set()
    for env, docs in rendered.items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unvalidated.add(doc["kind"])
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{env}: {doc['kind']}/{doc['metadata']['name']}: {exc}")
    # Only the custom resources lack a schema; anything else unvalidated is a mistake.
    assert unvalidated == CRD_KINDS


def test_schema_validation_rejects_a_wrong_type_and_an_unknown_field(rendered: dict[str, list[Manifest]]) -> None:
    api = named(rendered["dev"], "Deployment", "kassa-api")
    wrong_type = {**api, "spec": {**api["spec"], "replicas": "two"}}
    unknown = {**api, "spec": {**api["spec"], "replicaz": 2}}
    for broken in (wrong_type, unknown):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, kubernetes_version(), strict=True)


def test_checkov_finds_nothing_in_the_rendered_chart_and_every_skip_has_a_reason(checkov: dict[str, Any]) -> None:
    assert_checkov_clean(checkov["kubernetes"])
    skipped = {c["check_id"] for c in checkov["kubernetes"]["results"]["skipped_checks"]}
    assert skipped <= {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_35", "CKV_K8S_43"}  # the reasons are in _helpers.tpl


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_pod_runs_non_root_on_a_read_only_root_without_privilege_escalation(
    rendered: dict[str, list[Manifest]], env: str
) -> None:
    pods = list(workloads(rendered[env]))
    assert {d["kind"] for d in pods} >= {"Deployment", "Job"}
    for doc in pods:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] >= 10000
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, container["name"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
        if doc["kind"] != "Pod":  # the smoke-test pod writes nothing
            mounts = {m["mountPath"] for c in spec["containers"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts  # noqa: S108 - the writable scratch dir of a read-only root


def test_api_probes_liveness_on_healthz_and_readiness_on_readyz(rendered: dict[str, list[Manifest]]) -> None:
    for docs in rendered.values():
        (container,) = pod_spec(named(docs, "Deployment", "kassa-api"))["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["args"] == ["api"]
        # A broker outage must not empty the Service: the outbox carries the events meanwhile.
        assert env_of(container)["KASSA_READY_REQUIRES"]["value"] == "database"


def test_workers_are_separately_scaled_deployments_of_the_same_image(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["production"]
    api_image = pod_spec(named(docs, "Deployment", "kassa-api"))["containers"][0]["image"]
    for role in ("relay", "consumers"):
        worker = named(docs, "Deployment", f"kassa-worker-{role}")
        (container,) = pod_spec(worker)["containers"]
        assert container["args"] == ["worker", role]
        assert container["image"] == api_image
        assert env_of(container)["KASSA_METRICS_PORT"]["value"] == "9464"
    (job,) = of_kind(docs, "Job")
    assert pod_spec(job)["containers"][0]["image"] == api_image
    # The relay has a fixed replica count (a lease picks the leader); consumers scale on CPU.
    assert named(docs, "Deployment", "kassa-worker-relay")["spec"]["replicas"] == 3
    hpa = named(docs, "HorizontalPodAutoscaler", "kassa-worker-consumers")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kassa-worker-consumers"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_secrets_are_referenced_from_existing_secrets_never_inlined(
    rendered: dict[str, list[Manifest]], env: str
) -> None:
    docs = rendered[env]
    assert of_kind(docs, "Secret") == []
    chart_values = values(env)
    maps = [
        chart_values["secretEnv"],
        chart_values["migration"]["secretEnv"],
        chart_values["workers"]["defaults"]["secretEnv"],
    ]
    secret_names = {name for names in maps for name, ref in names.items() if ref}
    assert {"KASSA_DATABASE_URL", "KASSA_WORKER_DATABASE_URL", "KASSA_MIGRATION_DATABASE_URL"} <= secret_names
    credentials = re.compile(r"://[^/\s]*:[^/\s]*@|kassa_key_|whsec_")
    for doc in workloads(docs):
        for container in pod_spec(doc)["containers"]:
            env_vars = env_of(container)
            for name, var in env_vars.items():
                assert not credentials.search(str(var.get("value", ""))), (doc["metadata"]["name"], name)
            for name in secret_names & set(env_vars):
                assert "value" not in env_vars[name] and env_vars[name]["valueFrom"]["secretKeyRef"]["name"]


def test_the_migration_is_a_hook_and_each_workload_gets_only_its_own_database_role(
    rendered: dict[str, list[Manifest]],
) -> None:
    urls = ("KASSA_DATABASE_URL", "KASSA_WORKER_DATABASE_URL", "KASSA_MIGRATION_DATABASE_URL")

    def database_refs(container: dict[str, Any]) -> dict[str, dict[str, str]]:
        env_vars = env_of(container)
        return {name: env_vars[name]["valueFrom"]["secretKeyRef"] for name in urls if name in env_vars}

    for docs in rendered.values():
        job = named(docs, "Job", "kassa-migrate")
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        (container,) = pod_spec(job)["containers"]
        assert container["args"] == ["migrate"]
        assert database_refs(container) == {
            "KASSA_MIGRATION_DATABASE_URL": {"name": "kassa-database-migration", "key": "migration_url"}
        }
        # Its service account exists before it: an earlier hook, not an ordinary release object.
        account = named(docs, "ServiceAccount", pod_spec(job)["serviceAccountName"])
        assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
        # The API runs as the application role, the workers as the worker role; neither as the owner.
        api = pod_spec(named(docs, "Deployment", "kassa-api"))["containers"][0]
        assert database_refs(api) == {"KASSA_DATABASE_URL": {"name": "kassa-database", "key": "app_url"}}
        for role in ("relay", "consumers"):
            worker = pod_spec(named(docs, "Deployment", f"kassa-worker-{role}"))["containers"][0]
            assert database_refs(worker) == {
                "KASSA_WORKER_DATABASE_URL": {"name": "kassa-database-worker", "key": "worker_url"}
            }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_network_policies_deny_by_default_and_open_the_api_to_the_ingress_only(
    rendered: dict[str, list[Manifest]], env: str
) -> None:
    docs = rendered[env]
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies["kassa-default-deny"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    for doc in workloads(docs):
        assert selects(deny["podSelector"], pod_labels(doc)), doc["metadata"]["name"]

    api_labels = pod_labels(named(docs, "Deployment", "kassa-api"))
    admitting = [
        p for p in policies.values() if "Ingress" in p["policyTypes"] and selects(p["podSelector"], api_labels)
    ]
    sources = [peer for p in admitting for rule in p.get("ingress", []) for peer in rule["from"]]
    netpol = values(env)["networkPolicy"]
    allowed_namespaces = [netpol["ingress"]["namespaceSelector"], netpol["monitoring"]["namespaceSelector"]]
    for peer in sources:
        assert "ipBlock" not in peer
        if "namespaceSelector" in peer:
            assert peer["namespaceSelector"]["matchLabels"] in allowed_namespaces
        else:  # same namespace: only this release's smoke-test pod and (where enabled) its sandbox provider
            allowed = {"smoke-test", "sandbox"} if values(env)["sandbox"]["enabled"] else {"smoke-test"}
            assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] in allowed
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in [
        p["namespaceSelector"]["matchLabels"] for p in sources if "namespaceSelector" in p
    ]

    # Egress: DNS plus the configured dependencies, never "anywhere" (webhooks have their own policy).
    egress = policies["kassa-egress"]["egress"]
    assert len(egress) == 1 + len(netpol["egress"])
    for rule in egress:
        assert rule["to"] and rule["ports"]
        assert all(peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0" for peer in rule["to"])
    webhook = policies["kassa-webhook-egress"]
    (rule,) = webhook["egress"]
    assert [p["port"] for p in rule["ports"]] == [443]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        rule["to"][0]["ipBlock"]["except"]
    )
    consumers = pod_labels(named(docs, "Deployment", "kassa-worker-consumers"))
    assert selects(webhook["podSelector"], consumers)
    assert not selects(webhook["podSelector"], api_labels)


@pytest.mark.parametrize("env", ["staging", "production"])
def test_the_api_autoscales_on_cpu_and_request_rate_and_keeps_a_disruption_budget(
    rendered: dict[str, list[Manifest]], env: str
) -> None:
    docs = rendered[env]
    hpa = named(docs, "HorizontalPodAutoscaler", "kassa-api")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "kassa_http_requests_per_second"
    assert "replicas" not in named(docs, "Deployment", "kassa-api")["spec"]  # the HPA owns it
    pdb = named(docs, "PodDisruptionBudget", "kassa-api")
    assert pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can still proceed
    strategy = named(docs, "Deployment", "kassa-api")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_settings_are_data_driven_a_secret_setting_can_be_added_and_removed(
    helm: Path, rendered: dict[str, list[Manifest]]
) -> None:
    result = run(
        [
            str(helm),
            "template",
            "kassa",
            str(CHART),
            "-f",
            str(CHART / "values-dev.yaml"),
            "--set",
            "secretEnv.KASSA_NEW_SETTING.secret=kassa-new",
            "--set",
            "secretEnv.KASSA_NEW_SETTING.key=value",
            "--set",
            "secretEnv.KASSA_NATS_URL=null",
            "--set",
            "env.KASSA_PLAIN=yes",
        ]
    )
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "KASSA_NATS_URL" in env_of(pod_spec(named(rendered["dev"], "Deployment", "kassa-api"))["containers"][0])
    for name in ("kassa-api", "kassa-worker-relay", "kassa-worker-consumers"):
        env_vars = env_of(pod_spec(named(docs, "Deployment", name))["containers"][0])
        assert env_vars["KASSA_NEW_SETTING"]["valueFrom"]["secretKeyRef"] == {"name": "kassa-new", "key": "value"}
        assert env_vars["KASSA_PLAIN"]["value"] == "yes"
        assert "KASSA_NATS_URL" not in env_vars


def test_the_smoke_test_hook_checks_liveness_and_readiness_through_the_service(
    rendered: dict[str, list[Manifest]],
) -> None:
    smoke = named(rendered["dev"], "Pod", "kassa-smoke")
    assert smoke["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = smoke["spec"]["containers"][0]["command"][-1]
    assert "/healthz" in script and "/readyz" in script and "kassa-api.kassa-dev.svc" in script
    assert of_kind(rendered["production"], "Pod") == []  # no test pod in production


def test_every_container_of_the_chart_runs_a_real_kassa_command(rendered: dict[str, list[Manifest]]) -> None:
    from kassa.cli.main import build_parser

    parser = build_parser()
    seen = set()
    for docs in rendered.values():
        for doc in workloads(docs):
            for container in pod_spec(doc)["containers"]:
                if "args" in container:
                    assert parser.parse_args(container["args"]).func
                    seen.add(" ".join(container["args"]))
    sandbox = (
        "provider sandbox --host 0.0.0.0 --port 8080"
        " --callback-url http://kassa-api.kassa-dev.svc:80/v1/providers/sandbox/callbacks"
        " --secret-file /var/run/secrets/kassa/sandbox/sandbox_secret"
    )
    assert seen == {"api", "worker relay", "worker consumers", "migrate", sandbox}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_two_objects_of_a_kind_share_a_name(rendered: dict[str, list[Manifest]], env: str) -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for d in rendered[env]]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
