"""The chart deploys the sandbox payment provider only where a values file enables it (dev, never
production), wired to the API with the settings `kassa up` uses, and fenced by its own network policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from kassa.cli.main import build_parser
from kassa.settings import Settings
from support.chart import env_of, named, of_kind, pod_labels, pod_spec, selects, values
from support.deploy import CHART, ENVIRONMENTS, Manifest, helm_template

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.deploy
COMPONENT = "app.kubernetes.io/component"


def _sandbox_objects(docs: list[Manifest]) -> list[tuple[str, str]]:
    return [
        (d["kind"], d["metadata"]["name"]) for d in docs if d["metadata"].get("labels", {}).get(COMPONENT) == "sandbox"
    ]


def _secret_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """mount path -> (Secret name, key) of every Secret volume the container mounts."""
    volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    return {
        m["mountPath"]: (volumes[m["name"]]["secretName"], volumes[m["name"]]["items"][0]["key"])
        for m in container["volumeMounts"]
        if m["name"] in volumes
    }


@pytest.fixture
def kassa_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in [n for n in os.environ if n.startswith("KASSA_")]:
        monkeypatch.delenv(name)
    yield monkeypatch


def test_only_the_dev_values_enable_the_sandbox_and_production_states_it_is_off(
    rendered: dict[str, list[Manifest]],
) -> None:
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    production: dict[str, Any] = yaml.safe_load((CHART / "values-production.yaml").read_text())
    assert base["sandbox"]["enabled"] is False
    assert production["sandbox"]["enabled"] is False
    enabled = {env for env in ENVIRONMENTS if values(env)["sandbox"]["enabled"]}
    assert enabled == {"dev"}
    for env in ENVIRONMENTS:
        objects = _sandbox_objects(rendered[env])
        api = pod_spec(named(rendered[env], "Deployment", "kassa-api"))["containers"][0]
        if env in enabled:
            assert sorted(objects) == [
                ("Deployment", "kassa-sandbox"),
                ("Service", "kassa-sandbox"),
                ("ServiceAccount", "kassa-sandbox"),
            ]
        else:
            assert objects == []
            assert not {n for n in env_of(api) if n.startswith("KASSA_SANDBOX")}
            assert "kassa-sandbox" not in {p["metadata"]["name"] for p in of_kind(rendered[env], "NetworkPolicy")}


def test_the_api_reaches_the_sandbox_with_the_settings_kassa_up_uses(
    rendered: dict[str, list[Manifest]], kassa_env: pytest.MonkeyPatch
) -> None:
    docs = rendered["dev"]
    sandbox = named(docs, "Deployment", "kassa-sandbox")
    sandbox_spec = pod_spec(sandbox)
    (container,) = sandbox_spec["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.provider, args.host) == ("provider", "sandbox", "0.0.0.0")  # noqa: S104 - in its pod
    # In-memory state: exactly one, never two side by side during a rollout.
    assert sandbox["spec"]["replicas"] == 1 and sandbox["spec"]["strategy"]["type"] == "Recreate"
    assert [p["containerPort"] for p in container["ports"]] == [args.port]

    # The API, read by kassa's own settings, names the sandbox's Service and the shared secret's file.
    api_spec = pod_spec(named(docs, "Deployment", "kassa-api"))
    (api,) = api_spec["containers"]
    for name, var in env_of(api).items():
        if "value" in var:
            kassa_env.setenv(name, var["value"])
    settings = Settings.from_env()
    service = named(docs, "Service", "kassa-sandbox")
    assert settings.sandbox_url == f"http://kassa-sandbox.kassa-dev.svc:{service['spec']['ports'][0]['port']}"
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(sandbox))
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    # (Settings resolves the path against this machine's file system, hence both sides resolved.)
    assert settings.sandbox_secret_path == Path(args.secret_file).resolve()
    api_secret_dir = str(Path(env_of(api)["KASSA_SANDBOX_SECRET_FILE"]["value"]).parent)
    secret = _secret_mounts(sandbox_spec, container)[str(Path(args.secret_file).parent)]
    assert _secret_mounts(api_spec, api)[api_secret_dir] == secret == ("kassa-sandbox", "sandbox_secret")

    # The sandbox calls back the API's Service, on the callback route of `kassa up`'s wiring.
    api_service = named(docs, "Service", "kassa-api")
    port = api_service["spec"]["ports"][0]["port"]
    assert args.callback_url == f"http://kassa-api.kassa-dev.svc:{port}/v1/providers/sandbox/callbacks"


def test_the_sandbox_gets_no_database_broker_or_cloud_credentials(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["dev"]
    spec = pod_spec(named(docs, "Deployment", "kassa-sandbox"))
    (container,) = spec["containers"]
    assert [e["name"] for e in container["env"]] == ["KASSA_LOG_LEVEL"]
    assert all("valueFrom" not in e for e in container["env"])
    assert set(_secret_mounts(spec, container).values()) == {("kassa-sandbox", "sandbox_secret")}
    account = named(docs, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["name"] != pod_spec(named(docs, "Deployment", "kassa-api"))["serviceAccountName"]
    assert "annotations" not in account["metadata"]  # no IRSA role
    assert account["automountServiceAccountToken"] is False and spec["automountServiceAccountToken"] is False


def test_the_sandbox_talks_only_to_the_api_and_only_the_api_talks_to_it(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["dev"]
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    sandbox = pod_labels(named(docs, "Deployment", "kassa-sandbox"))
    api = pod_labels(named(docs, "Deployment", "kassa-api"))
    api_port = pod_spec(named(docs, "Deployment", "kassa-api"))["containers"][0]["ports"][0]["containerPort"]
    sandbox_port = pod_spec(named(docs, "Deployment", "kassa-sandbox"))["containers"][0]["ports"][0]["containerPort"]
    selecting = {name for name, p in policies.items() if selects(p["podSelector"], sandbox)}
    assert selecting == {"kassa-default-deny", "kassa-sandbox"}, "kassa-egress (database, broker) must skip it"

    own = policies["kassa-sandbox"]
    (admitted,) = own["ingress"]
    assert [peer["podSelector"]["matchLabels"][COMPONENT] for peer in admitted["from"]] == ["api"]
    dns, to_api = own["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [peer["podSelector"]["matchLabels"][COMPONENT] for peer in to_api["to"]] == ["api"]
    assert [p["port"] for p in to_api["ports"]] == [api_port]

    # The API's side: its egress to the sandbox's port, and the sandbox among its ingress sources.
    out = [
        rule
        for p in policies.values()
        if "Egress" in p["policyTypes"] and selects(p["podSelector"], api)
        for rule in p.get("egress", [])
        if any(selects(peer.get("podSelector", {"matchLabels": {"-": "-"}}), sandbox) for peer in rule["to"])
    ]
    assert [[p["port"] for p in rule["ports"]] for rule in out] == [[sandbox_port]]
    sources = [
        peer
        for p in policies.values()
        if "Ingress" in p["policyTypes"] and selects(p["podSelector"], api)
        for rule in p.get("ingress", [])
        for peer in rule["from"]
        if "namespaceSelector" not in peer
    ]
    assert any(selects(peer["podSelector"], sandbox) for peer in sources)


def test_the_sandbox_can_be_switched_on_for_another_environment_with_its_own_secret(helm: Path) -> None:
    switched = ("--set", "sandbox.enabled=true", "--set", "sandbox.secret.name=staging-sandbox")
    stream = helm_template(helm, "staging", *switched)
    docs = [d for d in yaml.safe_load_all(stream) if d]
    spec = pod_spec(named(docs, "Deployment", "kassa-sandbox"))
    (container,) = spec["containers"]
    assert "http://kassa-api.kassa-staging.svc:80/v1/providers/sandbox/callbacks" in container["args"]
    api_spec = pod_spec(named(docs, "Deployment", "kassa-api"))
    (api,) = api_spec["containers"]
    assert env_of(api)["KASSA_SANDBOX_URL"]["value"] == "http://kassa-sandbox.kassa-staging.svc:8080"
    assert ("staging-sandbox", "sandbox_secret") in _secret_mounts(api_spec, api).values()
