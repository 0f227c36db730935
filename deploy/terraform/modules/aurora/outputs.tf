output "proxy_endpoint" {
  description = "Where kassa connects (KASSA_DATABASE_URL's host)."
  value       = aws_db_proxy.this.endpoint
}

output "cluster_endpoint" {
  description = "The writer endpoint (operators and DR only; the app goes through the proxy)."
  value       = aws_rds_cluster.this.endpoint
}

output "cluster_arn" {
  description = "The Aurora cluster."
  value       = aws_rds_cluster.this.arn
}

output "master_user_secret_arn" {
  description = "The RDS-managed master secret (used by the rotation function of the app roles)."
  value       = aws_rds_cluster.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Aurora's security group."
  value       = module.aurora_sg.id
}

output "proxy_security_group_id" {
  description = "RDS Proxy's security group."
  value       = module.proxy_sg.id
}
