# prod: three zones everywhere, a NAT gateway per zone, a private Kubernetes API, Aurora with a
# writer and two readers, 35 days of PITR (the RPO/RTO policy in docs/dr.md), MSK.
locals {
  env = "prod"
}

module "kassa" {
  source = "../../modules/stack"

  env                    = local.env
  azs                    = ["${var.region}a", "${var.region}b", "${var.region}c"]
  vpc_cidr               = "10.30.0.0/16"
  single_nat_gateway     = false
  endpoint_public_access = false

  node_groups = {
    general = { instance_types = ["m7i.2xlarge"], min_size = 6, max_size = 30, desired_size = 6 }
  }

  aurora_min_acu        = coalesce(var.aurora_min_acu, 8)
  aurora_max_acu        = 128
  aurora_instance_count = 3
  backup_retention_days = 35
  deletion_protection   = true

  event_bus                = "msk"
  msk_broker_instance_type = "kafka.m7g.xlarge"
  cache_node_type          = "cache.r7g.large"
}
