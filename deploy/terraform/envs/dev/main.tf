# dev: small and cheap; NATS inside the cluster instead of MSK, one NAT gateway, a public
# (CIDR-restricted) Kubernetes API for developers. Deletion protection stays on: a dev database
# is recreated on purpose, not by accident.
locals {
  env = "dev"
}

module "kassa" {
  source = "../../modules/stack"

  env                          = local.env
  azs                          = ["${var.region}a", "${var.region}b", "${var.region}c"]
  vpc_cidr                     = "10.10.0.0/16"
  single_nat_gateway           = true
  endpoint_public_access       = true
  endpoint_public_access_cidrs = ["203.0.113.0/24"]

  node_groups = {
    general = { instance_types = ["m7i.large"], min_size = 2, max_size = 4, desired_size = 2, capacity_type = "SPOT" }
  }

  aurora_min_acu        = coalesce(var.aurora_min_acu, 0.5)
  aurora_max_acu        = 8
  aurora_instance_count = 1
  backup_retention_days = 3
  deletion_protection   = true

  event_bus       = "nats"
  cache_node_type = "cache.t4g.small"
}
