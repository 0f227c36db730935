output "bootstrap_brokers" {
  description = "SASL/SCRAM over TLS bootstrap list (KASSA_KAFKA_BOOTSTRAP)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "kms_key_arn" {
  description = "The CMK for MSK's SCRAM secrets (their names must start with AmazonMSK_)."
  value       = module.kms.arn
}

output "cluster_arn" {
  description = "The MSK cluster."
  value       = aws_msk_cluster.this.arn
}
