# staging: production's shape at a smaller size (MSK, two Aurora instances, private API).
locals {
  env = "staging"
}

module "kassa" {
  source = "../../modules/stack"

  env      = local.env
  azs      = ["${var.region}a", "${var.region}b", "${var.region}c"]
  vpc_cidr = "10.20.0.0/16"

  node_groups = {
    general = { instance_types = ["m7i.xlarge"], min_size = 3, max_size = 9, desired_size = 3 }
  }

  aurora_min_acu        = coalesce(var.aurora_min_acu, 2)
  aurora_max_acu        = 32
  aurora_instance_count = 2
  backup_retention_days = 7
  deletion_protection   = true

  event_bus                = "msk"
  msk_broker_instance_type = "kafka.m7g.large"
  cache_node_type          = "cache.t4g.medium"
}
