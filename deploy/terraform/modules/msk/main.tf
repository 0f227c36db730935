# Amazon MSK (event_bus = "msk"): three brokers over three zones, TLS between clients and
# brokers and inside the cluster, SASL/SCRAM client authentication, a CMK at rest, broker logs,
# and Prometheus exporters for the lag dashboards. Clients connect on 9096 (SASL_SSL).

data "aws_region" "current" {}

module "kms" {
  source             = "../kms"
  name               = "${var.name}-msk"
  description        = "${var.name} MSK at rest and SCRAM secrets"
  service_principals = ["logs.${data.aws_region.current.name}.amazonaws.com"]
  tags               = var.tags
}

module "sg" {
  source                    = "../ingress-sg"
  name                      = "${var.name}-msk"
  description               = "MSK brokers: SASL_SSL from the EKS nodes only"
  vpc_id                    = var.vpc_id
  port                      = 9096
  client_security_group_ids = var.client_security_group_ids
  tags                      = var.tags
}

resource "aws_cloudwatch_log_group" "msk" {
  name              = "/kassa/${var.name}/msk"
  retention_in_days = 365
  kms_key_id        = module.kms.arn
  tags              = var.tags
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-kassa"
  kafka_versions = [var.kafka_version]
  # Durability of acknowledged events: three copies, two in sync before an ack.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = length(var.data_subnet_ids)

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.data_subnet_ids
    security_groups = [module.sg.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = module.kms.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      scram = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk.name
      }
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  tags = var.tags
}

# The SCRAM users clients log in with. This resource owns the cluster's whole list: a secret
# associated by hand outside it is removed on the next apply.
resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = var.scram_secret_arns
}
