# Secrets Manager: every secret kassa reads, encrypted with one customer-managed key. The Helm
# chart's ExternalSecrets turn them into Kubernetes Secrets; nothing is ever put in values files.
#
#   kassa/<env>/database/app        kassa_app: the API (row-level security applies)
#   kassa/<env>/database/worker     kassa_worker: relay and consumers (cross-tenant event tables)
#   kassa/<env>/database/migration  kassa_owner: the schema owner, the migration Job only
#   kassa/<env>/admin               the bootstrap admin API key
#   kassa/<env>/master-key          the key that encrypts webhook secrets at rest
#   kassa/<env>/cache               the Valkey AUTH token
#   kassa/<env>/nats                the NATS client credentials (event_bus = "nats")
#   AmazonMSK_kassa/<env>/kafka     MSK's SASL/SCRAM user (event_bus = "msk"); MSK accepts only
#                                   secrets with this prefix and a customer-managed key
#
# Rotation (docs/database.md has the roles):
# - kassa_app and kassa_worker rotate with AWS's multi-user function: it alternates between the
#   role and a clone that is a member of it (row-level security and kassa's worker check accept
#   members), so the credentials a pod holds stay valid for one more period.
# - kassa_owner rotates with the single-user function: a clone would own the tables it creates
#   and would lack BYPASSRLS (role attributes are not inherited). Only the migration Job uses it,
#   at deploy time, so the instant of the password change costs nothing.

data "aws_region" "current" {}
module "kms" {
  source             = "../kms"
  name               = "${var.name}-secrets"
  description        = "${var.name} Secrets Manager secrets"
  service_principals = []
  tags               = var.tags
}

locals {
  db_roles = {
    app       = { username = "kassa_app", rotation = "multi" }
    worker    = { username = "kassa_worker", rotation = "multi" }
    migration = { username = "kassa_owner", rotation = "single" }
  }
  rotators = {
    multi  = "SecretsManagerRDSPostgreSQLRotationMultiUser"
    single = "SecretsManagerRDSPostgreSQLRotationSingleUser"
  }
}

resource "random_password" "db" {
  for_each = local.db_roles
  length   = 40
  special  = false
}

resource "aws_secretsmanager_secret" "db" {
  for_each                = local.db_roles
  name                    = "kassa/${var.env}/database/${each.key}"
  description             = "kassa ${each.key} database role (JSON: engine, host, port, username, password, dbname, masterarn)"
  kms_key_id              = module.kms.arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "db" {
  for_each  = local.db_roles
  secret_id = aws_secretsmanager_secret.db[each.key].id
  secret_string = jsonencode({
    engine    = "postgres"
    host      = var.db_host
    port      = 5432
    dbname    = "kassa"
    username  = each.value.username
    password  = random_password.db[each.key].result
    masterarn = var.db_master_secret_arn
  })
  # Rotation changes the value from now on; Terraform only seeds it.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_security_group" "rotator" {
  #checkov:skip=CKV2_AWS_5:attached to the rotation Lambda through the serverless application's vpcSecurityGroupIds parameter
  name        = "${var.name}-secret-rotator"
  description = "Secrets rotation function: to Aurora and the Secrets Manager endpoint"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "rotator_to_vpc" {
  for_each          = { postgres = 5432, https = 443 }
  security_group_id = aws_security_group.rotator.id
  description       = "${each.key} inside the VPC (Aurora; the Secrets Manager endpoint)"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_serverlessapplicationrepository_cloudformation_stack" "rotator" {
  for_each         = local.rotators
  name             = "${var.name}-pg-rotator-${each.key}"
  application_id   = "arn:aws:serverlessrepo:us-east-1:297356227824:applications/${each.value}"
  semantic_version = var.rotator_version
  capabilities     = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]
  parameters = {
    endpoint            = "https://secretsmanager.${data.aws_region.current.name}.amazonaws.com"
    functionName        = "${var.name}-pg-rotator-${each.key}"
    kmsKeyArn           = module.kms.arn
    vpcSubnetIds        = join(",", var.private_subnet_ids)
    vpcSecurityGroupIds = aws_security_group.rotator.id
  }
  tags = var.tags
}

resource "aws_secretsmanager_secret_rotation" "db" {
  for_each            = local.db_roles
  secret_id           = aws_secretsmanager_secret.db[each.key].id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.rotator[each.value.rotation].outputs["RotationLambdaARN"]
  rotation_rules {
    automatically_after_days = var.rotation_days
  }
  depends_on = [aws_secretsmanager_secret_version.db]
}

# Keys of kassa itself. Rotating them is an application procedure, not a Lambda: a new admin key
# is issued through the API and the old one revoked; a new master key re-encrypts the stored
# webhook secrets; the Valkey AUTH token uses ElastiCache's two-token ROTATE strategy.
resource "random_password" "key" {
  for_each = toset(["admin", "master-key", "cache", "nats"])
  length   = 64
  special  = false
}

locals {
  cache_auth = random_password.key["cache"].result
  nats = var.nats_host == "" ? {} : {
    nats = {
      description = "kassa NATS client credentials (JSON: url)"
      value       = { url = "nats://kassa:${random_password.key["nats"].result}@${var.nats_host}:4222" }
    }
  }
  keys = merge(local.nats, {
    admin = {
      description = "kassa bootstrap admin API key (JSON: admin_key)"
      value       = { admin_key = "kassa_key_${random_password.key["admin"].result}" }
    }
    master-key = {
      description = "kassa master key for webhook secrets at rest (JSON: master_key)"
      value       = { master_key = random_password.key["master-key"].result }
    }
    cache = {
      description = "kassa Valkey AUTH token and URL (JSON: auth_token, url)"
      value = {
        auth_token = local.cache_auth
        url        = var.cache_host == "" ? "" : "rediss://:${local.cache_auth}@${var.cache_host}:6379/0"
      }
    }
  })
}

resource "aws_secretsmanager_secret" "key" {
  #checkov:skip=CKV2_AWS_57:kassa's own keys rotate through kassa (admin key via the API, master key by re-encryption) the cache token through ElastiCache and the NATS password by a Terraform change, not a Lambda
  for_each                = local.keys
  name                    = "kassa/${var.env}/${each.key}"
  description             = each.value.description
  kms_key_id              = module.kms.arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "key" {
  for_each      = local.keys
  secret_id     = aws_secretsmanager_secret.key[each.key].id
  secret_string = jsonencode(each.value.value)
}

# MSK's SCRAM user. MSK reads the secret itself (the resource policy below; the association in the
# msk module would attach the same policy outside Terraform's state), the pods read it through
# their ExternalSecret (kassa-kafka in the Helm values) like every other secret here.
resource "random_password" "kafka" {
  count   = var.kafka_scram ? 1 : 0
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "kafka" {
  #checkov:skip=CKV2_AWS_57:MSK SCRAM passwords have no rotation Lambda; a new password is a Terraform change that MSK picks up from the associated secret
  count                   = var.kafka_scram ? 1 : 0
  name                    = "AmazonMSK_kassa/${var.env}/kafka"
  description             = "kassa MSK SASL/SCRAM user (JSON: username, password)"
  kms_key_id              = module.kms.arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "kafka" {
  count     = var.kafka_scram ? 1 : 0
  secret_id = aws_secretsmanager_secret.kafka[0].id
  secret_string = jsonencode({
    username = "kassa"
    password = random_password.kafka[0].result
  })
}

data "aws_iam_policy_document" "kafka_secret" {
  count = var.kafka_scram ? 1 : 0
  statement {
    sid       = "MskReadsItsScramSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.kafka[0].arn]
    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

resource "aws_secretsmanager_secret_policy" "kafka" {
  count      = var.kafka_scram ? 1 : 0
  secret_arn = aws_secretsmanager_secret.kafka[0].arn
  policy     = data.aws_iam_policy_document.kafka_secret[0].json
}
