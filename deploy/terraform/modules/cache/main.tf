# ElastiCache for Valkey: shared rate limits and caches (KASSA_REDIS_URL). Multi-AZ with
# automatic failover, encrypted at rest with a CMK and in transit, AUTH required, nodes only.

data "aws_region" "current" {}

module "kms" {
  source             = "../kms"
  name               = "${var.name}-cache"
  description        = "${var.name} ElastiCache at rest"
  service_principals = ["logs.${data.aws_region.current.name}.amazonaws.com"]
  tags               = var.tags
}

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-cache"
  subnet_ids = var.data_subnet_ids
  tags       = var.tags
}

module "sg" {
  source                    = "../ingress-sg"
  name                      = "${var.name}-cache"
  description               = "Valkey (TLS) from the EKS nodes only"
  vpc_id                    = var.vpc_id
  port                      = 6379
  client_security_group_ids = var.client_security_group_ids
  tags                      = var.tags
}

resource "aws_cloudwatch_log_group" "cache" {
  name              = "/kassa/${var.name}/valkey-slow-log"
  retention_in_days = 365
  kms_key_id        = module.kms.arn
  tags              = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "kassa ${var.name} rate limits and caches"
  engine               = "valkey"
  engine_version       = "8.0"
  node_type            = var.node_type
  port                 = 6379

  num_node_groups            = 1
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [module.sg.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = module.kms.arn
  transit_encryption_enabled = true
  auth_token                 = var.auth_token
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.cache.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = var.tags
}
