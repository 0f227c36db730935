output "kms_key_arn" {
  description = "The CMK of every kassa secret."
  value       = module.kms.arn
}

output "db_secret_arns" {
  description = "The database roles' secrets (RDS Proxy authenticates all three)."
  value       = [for role in ["app", "worker", "migration"] : aws_secretsmanager_secret.db[role].arn]
}

output "all_secret_arns" {
  description = "Every secret the kassa pods may read."
  value = concat(
    [for role in ["app", "worker", "migration"] : aws_secretsmanager_secret.db[role].arn],
    [for name, secret in aws_secretsmanager_secret.key : secret.arn],
    aws_secretsmanager_secret.kafka[*].arn,
  )
}

output "cache_auth_token" {
  description = "The Valkey AUTH token (for the replication group)."
  value       = local.cache_auth
  sensitive   = true
}

output "rotator_security_group_id" {
  description = "The rotation function's security group (Aurora accepts it besides the proxy)."
  value       = aws_security_group.rotator.id
}

output "nats_password_bcrypt" {
  description = "bcrypt hash of the NATS client password (for the NATS server config)."
  value       = random_password.key["nats"].bcrypt_hash
  sensitive   = true
}

output "kafka_scram_secret_arns" {
  description = "MSK's SCRAM secret (empty unless kafka_scram), for the cluster's association."
  value       = aws_secretsmanager_secret.kafka[*].arn
}
