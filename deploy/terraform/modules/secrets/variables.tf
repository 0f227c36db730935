variable "name" {
  description = "Name prefix (kassa-<env>); secrets are named kassa/<env>/..."
  type        = string
}

variable "env" {
  description = "Environment name (dev, staging, prod)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC (the rotation function runs inside it)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the rotation function."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "The VPC's CIDR (the rotation function reaches the Secrets Manager endpoint in it)."
  type        = string
}

variable "db_host" {
  description = "Host the database roles connect to (the RDS Proxy endpoint)."
  type        = string
}

variable "db_cluster_host" {
  description = "Aurora's writer endpoint (the rotation function changes passwords there)."
  type        = string
}

variable "db_master_secret_arn" {
  description = "The RDS-managed master secret the multi-user rotation function uses."
  type        = string
}

variable "rotation_days" {
  description = "How often the database roles' passwords rotate."
  type        = number
  default     = 30
}

variable "rotator_version" {
  description = "Version of AWS's SecretsManagerRDSPostgreSQLRotationMultiUser application."
  type        = string
  default     = "1.1.458"
}

variable "cache_host" {
  description = "ElastiCache primary endpoint (empty: no cache secret)."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "nats_host" {
  description = "In-cluster NATS host when event_bus = nats (empty: no NATS secret)."
  type        = string
  default     = ""
}

variable "kafka_scram" {
  description = "Create MSK's SCRAM credentials (event_bus = \"msk\"): a secret named AmazonMSK_kassa/<env>/kafka."
  type        = bool
  default     = false
}
