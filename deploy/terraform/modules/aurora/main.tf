# Aurora PostgreSQL Serverless v2 behind RDS Proxy. Written as plain resources rather than a
# registry module so that every security-relevant attribute (encryption, public access, backups,
# deletion protection, TLS) is in this repository, where checkov and tests/deploy check it.
#
# Layers: EKS nodes -> RDS Proxy (5432, TLS required) -> Aurora (5432, from the proxy only).

data "aws_partition" "current" {}

module "kms" {
  source             = "../kms"
  name               = "${var.name}-aurora"
  description        = "${var.name} Aurora storage, snapshots, Performance Insights and the master secret"
  service_principals = []
  tags               = var.tags
}

resource "aws_db_subnet_group" "this" {
  name       = "${var.name}-aurora"
  subnet_ids = var.data_subnet_ids
  tags       = var.tags
}

module "proxy_sg" {
  source                    = "../ingress-sg"
  name                      = "${var.name}-rds-proxy"
  description               = "RDS Proxy: PostgreSQL from the EKS nodes"
  vpc_id                    = var.vpc_id
  port                      = 5432
  client_security_group_ids = var.client_security_group_ids
  tags                      = var.tags
}

# Aurora accepts the proxy, and the secrets rotation function (it changes the roles' passwords).
module "aurora_sg" {
  source                    = "../ingress-sg"
  name                      = "${var.name}-aurora"
  description               = "Aurora: PostgreSQL from RDS Proxy and the rotation function only"
  vpc_id                    = var.vpc_id
  port                      = 5432
  client_security_group_ids = concat([module.proxy_sg.id], var.rotation_security_group_ids)
  tags                      = var.tags
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_aurora" {
  security_group_id            = module.proxy_sg.id
  description                  = "PostgreSQL to the Aurora cluster"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = module.aurora_sg.id
}

resource "aws_rds_cluster_parameter_group" "this" {
  name        = "${var.name}-aurora-pg16"
  family      = "aurora-postgresql16"
  description = "kassa: TLS only, statement logging for DDL, slow statements"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }
  tags = var.tags
}

resource "aws_rds_cluster" "this" {
  cluster_identifier = var.name
  engine             = "aurora-postgresql"
  engine_mode        = "provisioned"
  engine_version     = var.engine_version
  database_name      = "kassa"
  master_username    = "kassa_admin"

  # RDS keeps the master password in Secrets Manager, encrypted with our key, and rotates it.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = module.kms.arn

  serverlessv2_scaling_configuration {
    min_capacity = var.min_acu
    max_capacity = var.max_acu
  }

  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [module.aurora_sg.id]
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.this.name

  storage_encrypted = true
  kms_key_id        = module.kms.arn

  iam_database_authentication_enabled = true
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = var.backup_window
  preferred_maintenance_window        = var.maintenance_window
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]

  tags = var.tags
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_rds_cluster_instance" "this" {
  count                        = var.instance_count
  identifier                   = "${var.name}-${count.index}"
  cluster_identifier           = aws_rds_cluster.this.id
  engine                       = aws_rds_cluster.this.engine
  engine_version               = aws_rds_cluster.this.engine_version
  instance_class               = "db.serverless"
  db_subnet_group_name         = aws_db_subnet_group.this.name
  publicly_accessible          = false
  auto_minor_version_upgrade   = true
  monitoring_interval          = 15
  monitoring_role_arn          = aws_iam_role.monitoring.arn
  performance_insights_enabled = true
  performance_insights_kms_key_id       = module.kms.arn
  performance_insights_retention_period = 7
  copy_tags_to_snapshot        = true
  tags                         = var.tags
}

# RDS Proxy: pools connections from many pods, and keeps clients connected through a failover
# (it reconnects to the new writer instead of every client seeing the DNS flip).
data "aws_iam_policy_document" "proxy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "proxy" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.proxy_auth_secret_arns
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
  }
}

resource "aws_iam_role" "proxy" {
  name               = "${var.name}-rds-proxy"
  assume_role_policy = data.aws_iam_policy_document.proxy_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "proxy" {
  name   = "read-auth-secrets"
  role   = aws_iam_role.proxy.id
  policy = data.aws_iam_policy_document.proxy.json
}

resource "aws_db_proxy" "this" {
  name                   = var.name
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.proxy.arn
  vpc_subnet_ids         = var.data_subnet_ids
  vpc_security_group_ids = [module.proxy_sg.id]
  require_tls            = true
  idle_client_timeout    = 1800
  debug_logging          = false

  dynamic "auth" {
    for_each = var.proxy_auth_secret_arns
    content {
      auth_scheme = "SECRETS"
      iam_auth    = "DISABLED"
      secret_arn  = auth.value
    }
  }

  tags = var.tags
}

resource "aws_db_proxy_default_target_group" "this" {
  db_proxy_name = aws_db_proxy.this.name
  connection_pool_config {
    max_connections_percent      = 90
    max_idle_connections_percent = 30
    connection_borrow_timeout    = 10
  }
}

resource "aws_db_proxy_target" "this" {
  db_proxy_name         = aws_db_proxy.this.name
  target_group_name     = aws_db_proxy_default_target_group.this.name
  db_cluster_identifier = aws_rds_cluster.this.cluster_identifier
}
