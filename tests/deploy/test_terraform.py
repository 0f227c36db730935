"""The Terraform parses, passes checkov and holds the security rules: private data tier, encryption, protection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support.deploy import assert_checkov_clean

pytestmark = pytest.mark.deploy

Parsed = dict[Path, dict[str, Any]]
ENVS = ("dev", "staging", "prod")
MODULES = ("network", "eks", "aurora", "msk", "nats", "cache", "secrets", "kms", "ingress-sg", "stack")


def resources(terraform: Parsed, kind: str, module: str | None = None) -> dict[str, dict[str, Any]]:
    """name -> attributes of every `resource "<kind>" "<name>"` (in one module, or anywhere)."""
    found = {}
    for path, doc in terraform.items():
        if module is not None and path.parts[:2] != ("modules", module):
            continue
        for block in doc.get("resource", []):
            for name, attrs in block.get(kind, {}).items():
                found[f"{path.parts[1]}.{name}"] = attrs
    return found


def module_calls(terraform: Parsed, path: str) -> dict[str, dict[str, Any]]:
    return {name: attrs for block in terraform[Path(path)].get("module", []) for name, attrs in block.items()}


def references(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def test_every_file_parses_and_each_module_and_environment_has_its_files(terraform: Parsed) -> None:
    files = {p.as_posix() for p in terraform}
    for module in MODULES:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert f"modules/{module}/{name}" in files
    for env in ENVS:
        for name in ("main.tf", "versions.tf", "providers.tf"):
            assert f"envs/{env}/{name}" in files


def test_environments_are_thin_roots_over_the_shared_stack(terraform: Parsed) -> None:
    for env in ENVS:
        main = terraform[Path(f"envs/{env}/main.tf")]
        assert set(main) <= {"locals", "module", "__comments__"}, "an environment declares no resources of its own"
        (call,) = module_calls(terraform, f"envs/{env}/main.tf").values()
        assert call["source"] == "../../modules/stack"


def test_registry_modules_are_terraform_aws_modules_pinned_to_exact_versions(terraform: Parsed) -> None:
    registry = []
    for path, doc in terraform.items():
        for block in doc.get("module", []):
            for name, call in block.items():
                if not call["source"].startswith("../"):
                    registry.append((path, name, call))
    assert {name for _, name, _ in registry} == {"vpc", "endpoints", "eks", "app_irsa"}
    for path, name, call in registry:
        assert call["source"].startswith("terraform-aws-modules/"), (path, name)
        assert re.fullmatch(r"\d+\.\d+\.\d+", call["version"]), f"{path} {name}: pin an exact version"


def test_providers_are_pinned_exactly_in_every_environment(terraform: Parsed) -> None:
    for env in ENVS:
        (block,) = terraform[Path(f"envs/{env}/versions.tf")]["terraform"]
        for provider in block["required_providers"][0].values():
            assert re.fullmatch(r"\d+\.\d+\.\d+", provider["version"]), (env, provider)


def test_checkov_finds_nothing_and_every_skip_has_a_reason(checkov: dict[str, Any]) -> None:
    assert_checkov_clean(checkov["terraform"])


def test_no_database_cache_or_broker_is_publicly_reachable(terraform: Parsed) -> None:
    instances = resources(terraform, "aws_rds_cluster_instance")
    assert instances and all(i["publicly_accessible"] is False for i in instances.values())
    (msk,) = resources(terraform, "aws_msk_cluster").values()
    assert msk["broker_node_group_info"][0]["connectivity_info"][0]["public_access"][0]["type"] == "DISABLED"
    # Data services sit in the data subnets, which have no route to the internet.
    vpc = module_calls(terraform, "modules/network/main.tf")["vpc"]
    assert vpc["create_database_internet_gateway_route"] is False
    assert vpc["create_database_nat_gateway_route"] is False
    assert vpc["map_public_ip_on_launch"] is False
    for kind in ("aws_db_subnet_group", "aws_elasticache_subnet_group"):
        for group in resources(terraform, kind).values():
            assert group["subnet_ids"] == "${var.data_subnet_ids}"
    assert "data_subnet_ids" in module_calls(terraform, "modules/stack/main.tf")["aurora"]["data_subnet_ids"]


def test_only_the_load_balancer_accepts_traffic_from_the_internet(terraform: Parsed) -> None:
    open_rules = []
    for name, rule in resources(terraform, "aws_vpc_security_group_ingress_rule").items():
        if rule.get("cidr_ipv4") == "0.0.0.0/0" or rule.get("cidr_ipv6") == "::/0":
            open_rules.append((name, rule))
    assert [(name, rule["security_group_id"], rule["from_port"]) for name, rule in open_rules] == [
        ("eks.lb_https", "${aws_security_group.ingress_lb.id}", 443)
    ]
    # No inline rules anywhere (they would escape this check).
    for name, group in resources(terraform, "aws_security_group").items():
        assert "ingress" not in group and "egress" not in group, name
    assert resources(terraform, "aws_security_group_rule") == {}
    eks = module_calls(terraform, "modules/eks/main.tf")["eks"]
    assert eks["cluster_endpoint_private_access"] is True


def test_aurora_accepts_only_the_proxy_and_the_proxy_only_the_cluster_nodes(terraform: Parsed) -> None:
    # Data services get their group from modules/ingress-sg: one port, security-group sources only.
    (rule,) = resources(terraform, "aws_vpc_security_group_ingress_rule", "ingress-sg").values()
    assert rule["referenced_security_group_id"] == "${var.client_security_group_ids[count.index]}"
    assert rule["from_port"] == rule["to_port"] == "${var.port}" and "cidr_ipv4" not in rule
    aurora = module_calls(terraform, "modules/aurora/main.tf")
    assert aurora["proxy_sg"]["client_security_group_ids"] == "${var.client_security_group_ids}"
    assert aurora["aurora_sg"]["client_security_group_ids"] == (
        "${concat([module.proxy_sg.id], var.rotation_security_group_ids)}"
    )
    assert aurora["proxy_sg"]["port"] == aurora["aurora_sg"]["port"] == 5432
    (cluster,) = resources(terraform, "aws_rds_cluster").values()
    assert cluster["vpc_security_group_ids"] == ["${module.aurora_sg.id}"]
    (proxy,) = resources(terraform, "aws_db_proxy").values()
    assert proxy["vpc_security_group_ids"] == ["${module.proxy_sg.id}"]
    assert proxy["require_tls"] is True
    stack = module_calls(terraform, "modules/stack/main.tf")
    assert stack["aurora"]["client_security_group_ids"] == ["${module.eks.node_security_group_id}"]
    assert stack["aurora"]["rotation_security_group_ids"] == ["${module.secrets.rotator_security_group_id}"]
    for data, port in (("cache", 6379), ("msk", 9096)):
        assert stack[data]["client_security_group_ids"] == ["${module.eks.node_security_group_id}"]
        sg = module_calls(terraform, f"modules/{data}/main.tf")["sg"]
        assert sg["source"] == "../ingress-sg" and sg["port"] == port
        assert sg["client_security_group_ids"] == "${var.client_security_group_ids}"


def test_aurora_is_serverless_v2_encrypted_with_a_cmk_backed_up_and_protected(terraform: Parsed) -> None:
    (cluster,) = resources(terraform, "aws_rds_cluster").values()
    assert cluster["engine"] == "aurora-postgresql" and cluster["engine_mode"] == "provisioned"
    scaling = cluster["serverlessv2_scaling_configuration"][0]
    assert scaling == {"min_capacity": "${var.min_acu}", "max_capacity": "${var.max_acu}"}
    assert cluster["storage_encrypted"] is True
    assert cluster["kms_key_id"] == "${module.kms.arn}"
    assert cluster["backup_retention_period"] == "${var.backup_retention_days}"
    assert cluster["deletion_protection"] == "${var.deletion_protection}"
    assert cluster["skip_final_snapshot"] is False
    assert cluster["manage_master_user_password"] is True
    instances = resources(terraform, "aws_rds_cluster_instance")
    assert all(i["instance_class"] == "db.serverless" for i in instances.values())
    (params,) = resources(terraform, "aws_rds_cluster_parameter_group").values()
    assert {"name": "rds.force_ssl", "value": "1"} in params["parameter"]
    (selection,) = resources(terraform, "aws_backup_selection").values()
    assert selection["resources"] == ["${aws_rds_cluster.this.arn}"]


def test_prod_keeps_deletion_protection_long_pitr_and_a_private_kubernetes_api(terraform: Parsed) -> None:
    calls = {env: module_calls(terraform, f"envs/{env}/main.tf")["kassa"] for env in ENVS}
    prod = calls["prod"]
    assert prod["deletion_protection"] is True
    assert prod["backup_retention_days"] == 35
    assert prod["endpoint_public_access"] is False
    assert prod["single_nat_gateway"] is False
    assert prod["aurora_instance_count"] >= 2
    for env, call in calls.items():
        assert call.get("deletion_protection", True) is True, env
        assert call["backup_retention_days"] >= 1
    # The variable's default also protects: forgetting to pass it keeps the database.
    variables = {
        name: attrs
        for block in terraform[Path("modules/stack/variables.tf")]["variable"]
        for name, attrs in block.items()
    }
    assert variables["deletion_protection"]["default"] is True


def test_everything_at_rest_is_encrypted_with_customer_managed_keys_that_rotate(terraform: Parsed) -> None:
    (key,) = resources(terraform, "aws_kms_key").values()  # one definition, used by every data module
    assert key["enable_key_rotation"] is True
    for module in ("aurora", "cache", "msk", "secrets"):
        calls = module_calls(terraform, f"modules/{module}/main.tf")
        assert calls["kms"]["source"] == "../kms", module
    (cache,) = resources(terraform, "aws_elasticache_replication_group").values()
    assert cache["at_rest_encryption_enabled"] is True and cache["transit_encryption_enabled"] is True
    assert cache["kms_key_id"] == "${module.kms.arn}" and cache["engine"] == "valkey"
    assert cache["automatic_failover_enabled"] is True and cache["multi_az_enabled"] is True
    (msk,) = resources(terraform, "aws_msk_cluster").values()
    encryption = msk["encryption_info"][0]
    assert encryption["encryption_at_rest_kms_key_arn"] == "${module.kms.arn}"
    assert encryption["encryption_in_transit"][0] == {"client_broker": "TLS", "in_cluster": True}
    assert msk["client_authentication"][0]["unauthenticated"] is False
    for name, secret in resources(terraform, "aws_secretsmanager_secret").items():
        assert secret["kms_key_id"] == "${module.kms.arn}", name
    eks = module_calls(terraform, "modules/eks/main.tf")["eks"]
    assert eks["cluster_encryption_config"] == {"resources": ["secrets"]}


def test_database_credentials_rotate_automatically_the_owner_without_a_clone(terraform: Parsed) -> None:
    (rotation,) = resources(terraform, "aws_secretsmanager_secret_rotation").values()
    assert rotation["for_each"] == "${local.db_roles}"
    assert rotation["rotation_rules"][0]["automatically_after_days"] == "${var.rotation_days}"
    assert "[each.value.rotation]" in rotation["rotation_lambda_arn"]
    secrets_locals = terraform[Path("modules/secrets/main.tf")]["locals"][0]
    roles = secrets_locals["db_roles"]
    assert {role["username"] for role in roles.values()} == {"kassa_app", "kassa_worker", "kassa_owner"}
    # A clone of the owner would own what it creates and lack BYPASSRLS: single-user rotation.
    assert roles["migration"] == {"username": "kassa_owner", "rotation": "single"}
    assert roles["app"]["rotation"] == roles["worker"]["rotation"] == "multi"
    assert secrets_locals["rotators"] == {
        "multi": "SecretsManagerRDSPostgreSQLRotationMultiUser",
        "single": "SecretsManagerRDSPostgreSQLRotationSingleUser",
    }


def test_the_network_spans_three_zones_with_vpc_endpoints(terraform: Parsed) -> None:
    variables = {
        name: attrs
        for block in terraform[Path("modules/network/variables.tf")]["variable"]
        for name, attrs in block.items()
    }
    assert "length(var.azs) == 3" in references(variables["azs"]["validation"])
    endpoints = module_calls(terraform, "modules/network/main.tf")["endpoints"]
    assert "s3" in references(endpoints["endpoints"])
    interface = terraform[Path("modules/network/main.tf")]["locals"][0]["interface_endpoints"]
    assert {"ecr.api", "ecr.dkr", "sts", "secretsmanager", "kms", "logs"} <= set(interface)
    eks = module_calls(terraform, "modules/eks/main.tf")["eks"]
    assert eks["enable_irsa"] is True and eks["subnet_ids"] == "${var.private_subnet_ids}"


def test_the_event_bus_is_a_choice_between_msk_and_nats(terraform: Parsed) -> None:
    stack = module_calls(terraform, "modules/stack/main.tf")
    assert stack["msk"]["count"] == '${var.event_bus == "msk" ? 1 : 0}'
    assert stack["nats"]["count"] == '${var.event_bus == "nats" ? 1 : 0}'
    # In-cluster NATS requires a password too; its server config holds only the bcrypt hash.
    assert stack["nats"]["client_password_bcrypt"] == "${module.secrets.nats_password_bcrypt}"  # noqa: S105 - a reference
    (release,) = resources(terraform, "helm_release", "nats").values()
    assert "authorization" in references(release["values"]) and "var.client_password_bcrypt" in references(
        release["values"]
    )
    buses = {env: module_calls(terraform, f"envs/{env}/main.tf")["kassa"]["event_bus"] for env in ENVS}
    assert buses == {"dev": "nats", "staging": "msk", "prod": "msk"}


def test_msk_gets_a_scram_user_the_pods_read_under_the_name_the_helm_values_expect(terraform: Parsed) -> None:
    # SCRAM is the cluster's only client authentication; without an associated AmazonMSK_ secret
    # no client could log in, and the chart's kassa-kafka ExternalSecret would find nothing.
    stack = module_calls(terraform, "modules/stack/main.tf")
    assert stack["secrets"]["kafka_scram"] == '${var.event_bus == "msk"}'
    assert stack["msk"]["scram_secret_arns"] == "${module.secrets.kafka_scram_secret_arns}"  # noqa: S105 - a reference
    (association,) = resources(terraform, "aws_msk_scram_secret_association", "msk").values()
    assert association["cluster_arn"] == "${aws_msk_cluster.this.arn}"
    assert association["secret_arn_list"] == "${var.scram_secret_arns}"  # noqa: S105 - a reference
    secret = resources(terraform, "aws_secretsmanager_secret", "secrets")["secrets.kafka"]
    assert secret["name"] == "AmazonMSK_kassa/${var.env}/kafka"
    assert secret["kms_key_id"] == "${module.kms.arn}", "MSK refuses secrets under the default AWS key"
    (version,) = [
        v
        for k, v in resources(terraform, "aws_secretsmanager_secret_version", "secrets").items()
        if k.endswith(".kafka")
    ]
    assert "username" in references(version["secret_string"]) and "password" in references(version["secret_string"])
    policy = terraform[Path("modules/secrets/main.tf")]
    readers = [d["aws_iam_policy_document"]["kafka_secret"] for d in policy["data"] if "aws_iam_policy_document" in d]
    assert "kafka.amazonaws.com" in references(readers)
    outputs = {
        name: attrs
        for block in terraform[Path("modules/secrets/outputs.tf")]["output"]
        for name, attrs in block.items()
    }
    assert "aws_secretsmanager_secret.kafka[*].arn" in references(outputs["all_secret_arns"]["value"]), (
        "pods may read it"
    )
    root = Path(__file__).resolve().parents[2]
    for env, values in (("staging", "values-staging.yaml"), ("prod", "values-production.yaml")):
        text = (root / "deploy/helm/kassa" / values).read_text()
        assert f"key: AmazonMSK_kassa/{env}/kafka" in text, f"{values} reads the secret Terraform creates"
