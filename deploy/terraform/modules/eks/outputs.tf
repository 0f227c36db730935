output "cluster_name" {
  description = "The EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "The Kubernetes API endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "The cluster's CA (base64)."
  value       = module.eks.cluster_certificate_authority_data
}

output "node_security_group_id" {
  description = "Security group of the nodes: the only source the data tier accepts (via RDS Proxy for Aurora)."
  value       = module.eks.node_security_group_id
}

output "ingress_lb_security_group_id" {
  description = "The internet-facing load balancer's security group."
  value       = aws_security_group.ingress_lb.id
}

output "app_role_arn" {
  description = "IRSA role of the kassa service account (serviceAccount.annotations in the chart)."
  value       = module.app_irsa.iam_role_arn
}
