output "primary_endpoint" {
  description = "The primary endpoint (KASSA_REDIS_URL's host)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "security_group_id" {
  description = "The cache's security group."
  value       = module.sg.id
}
