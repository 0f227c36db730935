# One kassa environment: network, EKS, Aurora behind RDS Proxy, the event bus (MSK or NATS),
# Valkey and the secrets. The envs/ roots call this module with their sizes and nothing else.
#
# Security groups, outside in:
#   internet -> ingress LB (443)             the only internet-facing group (eks module)
#   LB       -> nodes (ingress controller)
#   nodes    -> RDS Proxy 5432 -> Aurora 5432 (Aurora accepts only the proxy and the rotator)
#   nodes    -> MSK 9096, Valkey 6379
# The data subnets have no route to the internet.

locals {
  name = "kassa-${var.env}"
  tags = merge(var.tags, { "kassa.dev/env" = var.env, "managed-by" = "terraform" })
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr               = var.vpc_cidr
  azs                = var.azs
  single_nat_gateway = var.single_nat_gateway
  tags               = local.tags
}

module "secrets" {
  source               = "../secrets"
  name                 = local.name
  env                  = var.env
  vpc_id               = module.network.vpc_id
  vpc_cidr             = module.network.vpc_cidr
  private_subnet_ids   = module.network.private_subnet_ids
  db_host              = module.aurora.proxy_endpoint
  db_cluster_host      = module.aurora.cluster_endpoint
  db_master_secret_arn = module.aurora.master_user_secret_arn
  cache_host           = module.cache.primary_endpoint
  nats_host            = var.event_bus == "nats" ? "nats.nats.svc" : ""
  kafka_scram          = var.event_bus == "msk"
  tags                 = local.tags
}

module "eks" {
  source                       = "../eks"
  name                         = local.name
  kubernetes_version           = var.kubernetes_version
  vpc_id                       = module.network.vpc_id
  private_subnet_ids           = module.network.private_subnet_ids
  public_subnet_ids            = module.network.public_subnet_ids
  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  node_groups                  = var.node_groups
  app_namespace                = var.app_namespace
  app_secret_arns              = module.secrets.all_secret_arns
  secrets_kms_key_arn          = module.secrets.kms_key_arn
  tags                         = local.tags
}

module "aurora" {
  source                      = "../aurora"
  name                        = local.name
  vpc_id                      = module.network.vpc_id
  data_subnet_ids             = module.network.data_subnet_ids
  client_security_group_ids   = [module.eks.node_security_group_id]
  rotation_security_group_ids = [module.secrets.rotator_security_group_id]
  min_acu                     = var.aurora_min_acu
  max_acu                     = var.aurora_max_acu
  instance_count              = var.aurora_instance_count
  backup_retention_days       = var.backup_retention_days
  deletion_protection         = var.deletion_protection
  proxy_auth_secret_arns      = module.secrets.db_secret_arns
  secrets_kms_key_arn         = module.secrets.kms_key_arn
  tags                        = local.tags
}

module "msk" {
  source                    = "../msk"
  count                     = var.event_bus == "msk" ? 1 : 0
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  data_subnet_ids           = module.network.data_subnet_ids
  client_security_group_ids = [module.eks.node_security_group_id]
  broker_instance_type      = var.msk_broker_instance_type
  scram_secret_arns         = module.secrets.kafka_scram_secret_arns
  tags                      = local.tags
}

module "nats" {
  source                 = "../nats"
  count                  = var.event_bus == "nats" ? 1 : 0
  client_password_bcrypt = module.secrets.nats_password_bcrypt
}

module "cache" {
  source                    = "../cache"
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  data_subnet_ids           = module.network.data_subnet_ids
  client_security_group_ids = [module.eks.node_security_group_id]
  node_type                 = var.cache_node_type
  auth_token                = module.secrets.cache_auth_token
  tags                      = local.tags
}
