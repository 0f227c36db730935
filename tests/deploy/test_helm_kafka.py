"""Where the chart points kassa at MSK (staging, production), the event workers connect as the MSK
module requires (SASL_SSL, SCRAM-SHA-512, port 9096) with credentials from a Secret, kassa's own
settings accept what is rendered, and no other workload gets the Kafka password."""

from __future__ import annotations

import os
import re

import pytest

from kassa.events.bus.kafka_security import KafkaSecurity
from kassa.settings import Settings
from support.chart import env_of, named, of_kind, pod_spec
from support.deploy import TERRAFORM, Manifest

pytestmark = pytest.mark.deploy
MSK_ENVIRONMENTS = ("staging", "production")


def _msk_client_port() -> int:
    text = (TERRAFORM / "modules" / "msk" / "main.tf").read_text()
    match = re.search(r'module "sg" \{.*?\bport\s*=\s*(\d+)', text, re.S)
    assert match, "the MSK module opens one client port"
    return int(match.group(1))


def _msk_min_insync_replicas() -> int:
    text = (TERRAFORM / "modules" / "msk" / "main.tf").read_text()
    match = re.search(r"min\.insync\.replicas=(\d+)", text)
    assert match, "the MSK configuration sets min.insync.replicas"
    return int(match.group(1))


@pytest.mark.parametrize("env", MSK_ENVIRONMENTS)
def test_the_workers_reach_msk_over_sasl_ssl_with_scram_from_a_secret(
    rendered: dict[str, list[Manifest]], env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered[env]
    port = _msk_client_port()
    for role in ("relay", "consumers"):
        (container,) = pod_spec(named(docs, "Deployment", f"kassa-worker-{role}"))["containers"]
        variables = env_of(container)
        bootstrap = variables["KASSA_KAFKA_BOOTSTRAP"]["value"]
        assert {int(server.rsplit(":", 1)[1]) for server in bootstrap.split(",")} == {port}
        for name in ("KASSA_KAFKA_USERNAME", "KASSA_KAFKA_PASSWORD"):
            assert variables[name]["valueFrom"]["secretKeyRef"]["name"] == "kassa-kafka"
        # What kassa makes of it: the settings are accepted as a SCRAM-over-TLS connection.
        for name in [n for n in os.environ if n.startswith("KASSA_")]:
            monkeypatch.delenv(name)
        for name, var in variables.items():
            monkeypatch.setenv(name, var.get("value", f"from-secret-{name}"))
        settings = Settings.from_env()
        security = KafkaSecurity.from_settings(settings)
        assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        # acks=all needs min.insync.replicas in-sync copies of the topic kassa creates.
        assert settings.kafka_replication_factor > _msk_min_insync_replicas()
    broker_rules = [r for r in of_kind(docs, "NetworkPolicy") if r["metadata"]["name"] == "kassa-egress"]
    ports = {p["port"] for rule in broker_rules[0]["spec"]["egress"] for p in rule["ports"]}
    assert port in ports, "the egress policy does not open the MSK client port"


@pytest.mark.parametrize("env", MSK_ENVIRONMENTS)
def test_only_the_event_workers_get_the_kafka_password(rendered: dict[str, list[Manifest]], env: str) -> None:
    docs = rendered[env]
    holders = {
        doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] in ("Deployment", "Job")
        for container in pod_spec(doc)["containers"]
        if "KASSA_KAFKA_PASSWORD" in env_of(container)
    }
    assert holders == {"kassa-worker-relay", "kassa-worker-consumers"}
    secrets = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "ExternalSecret")}
    # MSK takes SCRAM users only from Secrets Manager secrets named AmazonMSK_*.
    data = secrets["kassa-kafka"]["data"]
    assert {d["secretKey"] for d in data} == {"username", "password"}
    assert all(d["remoteRef"]["key"].startswith("AmazonMSK_") for d in data), data
