output "url" {
  description = "In-cluster NATS URL (without credentials)."
  value       = "nats://nats.${var.namespace}.svc:4222"
}
