variable "namespace" {
  description = "Namespace of the NATS cluster (the kassa chart's NetworkPolicy egress points at it)."
  type        = string
  default     = "nats"
}

variable "chart_version" {
  description = "Version of the official NATS Helm chart."
  type        = string
  default     = "1.2.6"
}

variable "replicas" {
  description = "NATS servers (JetStream needs 3 for replicated streams)."
  type        = number
  default     = 3
}

variable "jetstream_volume_size" {
  description = "JetStream file store per server."
  type        = string
  default     = "50Gi"
}

variable "client_user" {
  description = "The one NATS user kassa connects as."
  type        = string
  default     = "kassa"
}

variable "client_password_bcrypt" {
  description = "bcrypt hash of that user's password (the clear password lives only in Secrets Manager)."
  type        = string
  sensitive   = true
}
