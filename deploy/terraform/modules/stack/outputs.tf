output "cluster_name" {
  description = "EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "The cluster's CA (base64)."
  value       = module.eks.cluster_certificate_authority_data
}

output "app_role_arn" {
  description = "IRSA role for the chart's serviceAccount.annotations."
  value       = module.eks.app_role_arn
}

output "ingress_lb_security_group_id" {
  description = "Security group for the ingress controller's load balancer annotation."
  value       = module.eks.ingress_lb_security_group_id
}

output "database_proxy_endpoint" {
  description = "RDS Proxy endpoint (already in the database secrets)."
  value       = module.aurora.proxy_endpoint
}

output "kafka_bootstrap" {
  description = "MSK bootstrap brokers (KASSA_KAFKA_BOOTSTRAP), empty with NATS."
  value       = var.event_bus == "msk" ? module.msk[0].bootstrap_brokers : ""
}

output "nats_url" {
  description = "In-cluster NATS URL, empty with MSK."
  value       = var.event_bus == "nats" ? module.nats[0].url : ""
}

output "data_subnet_cidrs" {
  description = "Data subnet CIDRs for the chart's networkPolicy.egress."
  value       = module.network.data_subnet_cidrs
}
