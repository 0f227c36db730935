# EKS with managed node groups in the private subnets, IRSA, envelope encryption of Kubernetes
# Secrets with a KMS key, control-plane logs, and the one security group that faces the
# internet: the ingress load balancer's.

locals {
  ingress_ports = { http = 80, https = 443, health = 10254 }
}

module "eks" {
  #checkov:skip=CKV_TF_1:registry modules are pinned to an exact release version; the lock file pins provider hashes
  source  = "terraform-aws-modules/eks/aws"
  version = "20.31.6"

  cluster_name    = var.name
  cluster_version = var.kubernetes_version

  vpc_id                   = var.vpc_id
  subnet_ids               = var.private_subnet_ids
  control_plane_subnet_ids = var.private_subnet_ids

  cluster_endpoint_private_access      = true
  cluster_endpoint_public_access       = var.endpoint_public_access
  cluster_endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  enable_irsa                              = true
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true

  # Kubernetes Secrets encrypted with a module-created KMS key (rotation on).
  create_kms_key                  = true
  enable_kms_key_rotation         = true
  cluster_encryption_config       = { resources = ["secrets"] }
  cluster_enabled_log_types       = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = 365

  cluster_addons = {
    coredns                = {}
    kube-proxy             = {}
    eks-pod-identity-agent = {}
    # NetworkPolicy enforcement for the chart's policies.
    vpc-cni = { configuration_values = jsonencode({ enableNetworkPolicy = "true" }) }
  }

  eks_managed_node_group_defaults = {
    ami_type = "AL2023_x86_64_STANDARD"
    # IMDSv2 only, one hop: pods cannot reach the node's instance role through the metadata service.
    metadata_options = {
      http_endpoint               = "enabled"
      http_tokens                 = "required"
      http_put_response_hop_limit = 1
    }
    block_device_mappings = {
      xvda = {
        device_name = "/dev/xvda"
        ebs         = { volume_size = 50, volume_type = "gp3", encrypted = true, delete_on_termination = true }
      }
    }
  }

  eks_managed_node_groups = { for name, group in var.node_groups : name => {
    instance_types = group.instance_types
    capacity_type  = group.capacity_type
    min_size       = group.min_size
    max_size       = group.max_size
    desired_size   = group.desired_size
    subnet_ids     = var.private_subnet_ids
  } }

  # The nodes accept the load balancer on the ingress controller's ports only (IP targets: HTTP,
  # HTTPS, and its health endpoint); node-to-node and control-plane rules come from the module.
  node_security_group_additional_rules = { for name, port in local.ingress_ports : "ingress_from_lb_${name}" => {
    description              = "Ingress controller ${name} from the internet-facing load balancer"
    protocol                 = "tcp"
    from_port                = port
    to_port                  = port
    type                     = "ingress"
    source_security_group_id = aws_security_group.ingress_lb.id
  } }

  tags = var.tags
}

# The only security group open to the internet: HTTPS to the ingress load balancer. The AWS
# Load Balancer Controller attaches it (service.beta.kubernetes.io/aws-load-balancer-security-groups).
resource "aws_security_group" "ingress_lb" {
  #checkov:skip=CKV2_AWS_5:attached to the load balancer by the AWS Load Balancer Controller (service annotation), outside Terraform
  name        = "${var.name}-ingress-lb"
  description = "Internet-facing load balancer of the kassa API: HTTPS in, to the nodes out"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { "kassa.dev/internet-facing" = "true" })
}

resource "aws_vpc_security_group_ingress_rule" "lb_https" {
  security_group_id = aws_security_group.ingress_lb.id
  description       = "HTTPS from the internet"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0" #checkov:skip=CKV_AWS_260:the public API's load balancer must accept HTTPS from anywhere
}

resource "aws_vpc_security_group_egress_rule" "lb_to_nodes" {
  for_each                     = local.ingress_ports
  security_group_id            = aws_security_group.ingress_lb.id
  description                  = "To the ingress controller (${each.key}) on the nodes"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = module.eks.node_security_group_id
}

# IRSA: the kassa pods' role may read their own secrets and nothing else.
data "aws_iam_policy_document" "app" {
  statement {
    sid       = "ReadKassaSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.app_secret_arns
  }
  statement {
    sid       = "DecryptKassaSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
  }
}

resource "aws_iam_policy" "app" {
  name   = "${var.name}-app"
  policy = data.aws_iam_policy_document.app.json
  tags   = var.tags
}

module "app_irsa" {
  #checkov:skip=CKV_TF_1:registry modules are pinned to an exact release version; the lock file pins provider hashes
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "5.48.0"

  role_name        = "${var.name}-app"
  role_policy_arns = { secrets = aws_iam_policy.app.arn }

  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["${var.app_namespace}:${var.app_service_account}", "external-secrets:external-secrets"]
    }
  }

  tags = var.tags
}
