"""The chart ships the alert rules and dashboards, and its custom resources are what their operators expect."""

from __future__ import annotations

import filecmp
import json
from typing import TYPE_CHECKING

import pytest
import yaml

from support.chart import named, of_kind
from support.deploy import CHART, REPO, Manifest, run

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.deploy

OBSERVABILITY = REPO / "deploy" / "observability"
CHART_OBSERVABILITY = CHART / "files" / "observability"


def test_custom_resources_have_the_fields_their_operators_need(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["production"]
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}
    for rule in of_kind(docs, "PrometheusRule"):
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["spec"]["groups"] and all(g["name"] and g["rules"] for g in rule["spec"]["groups"])
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                assert r["expr"].strip() and ("alert" in r or "record" in r)
    secrets = of_kind(docs, "ExternalSecret")
    assert secrets
    for es in secrets:
        assert es["apiVersion"].startswith("external-secrets.io/")
        assert es["spec"]["secretStoreRef"]["name"] and es["spec"]["target"]["name"] == es["metadata"]["name"]
        keys = [d["remoteRef"]["key"] for d in es["spec"].get("data", [])]
        keys += [d["extract"]["key"] for d in es["spec"].get("dataFrom", [])]
        # kassa's own secrets, and MSK's SCRAM user (MSK accepts only secrets named AmazonMSK_*).
        assert keys and all(key.startswith(("kassa/prod/", "AmazonMSK_kassa/prod/")) for key in keys)
    # The rotated database secrets are JSON; the connection URL is built from their fields.
    database = named(docs, "ExternalSecret", "kassa-database")["spec"]["target"]["template"]["data"]["app_url"]
    assert database.startswith("postgresql://{{ .username }}:{{ .password | urlquery }}@{{ .host }}")


def test_alert_rules_and_dashboards_ship_as_prometheus_rules_and_config_maps(
    rendered: dict[str, list[Manifest]],
) -> None:
    rule_files = sorted(p.relative_to(CHART).as_posix() for p in (CHART / "files").rglob("*.y*ml"))
    dashboards = sorted(p.relative_to(CHART).as_posix() for p in (CHART / "files").rglob("*.json"))
    assert "files/rules/kassa-platform.yaml" in rule_files and dashboards
    production, dev = rendered["production"], rendered["dev"]
    sources = {r["metadata"]["annotations"]["kassa.dev/source"] for r in of_kind(production, "PrometheusRule")}
    assert sources == {f for f in rule_files if "groups" in yaml.safe_load((CHART / f).read_text())}
    dev_rules = [c for c in of_kind(dev, "ConfigMap") if c["metadata"]["labels"].get("prometheus_rule") == "1"]
    assert {c["metadata"]["annotations"]["kassa.dev/source"] for c in dev_rules} == sources
    boards = [c for c in of_kind(production, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert {c["metadata"]["annotations"]["kassa.dev/source"] for c in boards} == set(dashboards)
    for board in boards:
        (content,) = board["data"].values()
        assert json.loads(content)["panels"]


def test_the_chart_copies_of_deploy_observability_are_identical_to_their_sources() -> None:
    """Helm reads only files inside the chart; `make chart-sync` copies the rule files and dashboards."""

    def shipped(root: Path) -> set[str]:
        files = [*root.glob("prometheus/*.rules.yaml"), *root.glob("dashboards/*.json")]
        return {p.relative_to(root).as_posix() for p in files}

    sources = shipped(OBSERVABILITY)
    copies = {p.relative_to(CHART_OBSERVABILITY).as_posix() for p in CHART_OBSERVABILITY.rglob("*") if p.is_file()}
    copies.discard("README.md")
    assert sources, "deploy/observability ships rule files and dashboards"
    assert copies == sources, "run `make chart-sync`"
    for name in sorted(sources):
        assert filecmp.cmp(OBSERVABILITY / name, CHART_OBSERVABILITY / name, shallow=False), f"{name}: make chart-sync"
    # The copies are what the chart renders: each is a rule file or a dashboard.
    for name in sources:
        text = (CHART_OBSERVABILITY / name).read_text()
        assert ("groups" in yaml.safe_load(text)) if name.endswith(".yaml") else ("panels" in json.loads(text))


def test_promtool_accepts_the_chart_s_own_alert_rules() -> None:
    from support.tools_prometheus import binary

    rules = CHART / "files" / "rules" / "kassa-platform.yaml"
    result = run([str(binary("promtool")), "check", "rules", str(rules)])
    assert "SUCCESS" in result.stdout
