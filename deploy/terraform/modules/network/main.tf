# The network: a VPC over three zones with three tiers of subnets.
#   public   only the internet-facing load balancer (and the NAT gateways)
#   private  the EKS nodes (no public IPs; out through NAT for webhooks, in through the LB)
#   data     Aurora, RDS Proxy, MSK and ElastiCache (no route to the internet at all)
# Interface endpoints keep AWS API traffic (ECR, STS, Secrets Manager, KMS, logs) off the NAT.

locals {
  # /20 per subnet: public 0-2, private 3-5 (nodes and pods need the room), data 6-8.
  public_subnets   = [for i in range(3) : cidrsubnet(var.cidr, 4, i)]
  private_subnets  = [for i in range(3) : cidrsubnet(var.cidr, 4, i + 3)]
  database_subnets = [for i in range(3) : cidrsubnet(var.cidr, 4, i + 6)]
  interface_endpoints = ["ecr.api", "ecr.dkr", "sts", "secretsmanager", "kms", "logs", "elasticloadbalancing", "autoscaling", "ec2"]
}

module "vpc" {
  #checkov:skip=CKV_TF_1:registry modules are pinned to an exact release version; the lock file pins provider hashes
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.16.0"

  name = var.name
  cidr = var.cidr
  azs  = var.azs

  public_subnets   = local.public_subnets
  private_subnets  = local.private_subnets
  database_subnets = local.database_subnets

  # The data tier has no route out: create_database_internet_gateway_route and the NAT route
  # stay off, and no subnet group is made here (each data service makes its own).
  create_database_subnet_group           = false
  create_database_subnet_route_table     = true
  create_database_internet_gateway_route = false
  create_database_nat_gateway_route      = false

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway
  map_public_ip_on_launch = false

  enable_dns_hostnames = true
  enable_dns_support   = true

  # The default security group of the VPC allows nothing.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.flow_log_retention_days
  flow_log_max_aggregation_interval               = 60

  # Tags the AWS Load Balancer Controller uses to place load balancers.
  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }

  tags = var.tags
}

resource "aws_security_group" "endpoints" {
  #checkov:skip=CKV2_AWS_5:attached to the interface endpoints by module.endpoints (security_group_ids), which checkov does not follow
  name        = "${var.name}-vpc-endpoints"
  description = "Interface VPC endpoints: HTTPS from inside the VPC only"
  vpc_id      = module.vpc.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS to the AWS APIs from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.cidr
}

module "endpoints" {
  #checkov:skip=CKV_TF_1:registry modules are pinned to an exact release version; the lock file pins provider hashes
  source  = "terraform-aws-modules/vpc/aws//modules/vpc-endpoints"
  version = "5.16.0"

  vpc_id             = module.vpc.vpc_id
  security_group_ids = [aws_security_group.endpoints.id]

  endpoints = merge(
    {
      s3 = {
        service         = "s3"
        service_type    = "Gateway"
        route_table_ids = concat(module.vpc.private_route_table_ids, module.vpc.database_route_table_ids)
        tags            = { Name = "${var.name}-s3" }
      }
    },
    { for service in local.interface_endpoints : replace(service, ".", "_") => {
      service             = service
      private_dns_enabled = true
      subnet_ids          = module.vpc.private_subnets
      tags                = { Name = "${var.name}-${service}" }
    } }
  )

  tags = var.tags
}
