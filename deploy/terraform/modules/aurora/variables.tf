variable "name" {
  description = "Name prefix (kassa-<env>)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "data_subnet_ids" {
  description = "Subnets of the cluster and the proxy (three zones, no internet route)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Who may connect to RDS Proxy: the EKS nodes' security group. Aurora itself accepts only the proxy."
  type        = list(string)
}

variable "rotation_security_group_ids" {
  description = "The secrets rotation function's security group: the only direct client of Aurora besides the proxy."
  type        = list(string)
  default     = []
}

variable "engine_version" {
  description = "Aurora PostgreSQL version."
  type        = string
  default     = "16.6"
}

variable "min_acu" {
  description = "Serverless v2 minimum capacity (ACU); capacity plans raise it before live events."
  type        = number
  default     = 2
}

variable "max_acu" {
  description = "Serverless v2 maximum capacity (ACU)."
  type        = number
  default     = 64
}

variable "instance_count" {
  description = "Writer plus readers; each in its own zone, a reader is promoted on failover."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Automated backups and point-in-time recovery window (1-35 days)."
  type        = number
  default     = 14
  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "Aurora keeps backups for 1 to 35 days."
  }
}

variable "backup_window" {
  description = "Daily backup window (UTC)."
  type        = string
  default     = "02:00-03:00"
}

variable "maintenance_window" {
  description = "Weekly maintenance window (UTC)."
  type        = string
  default     = "sun:03:30-sun:04:30"
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster (always true in prod)."
  type        = bool
  default     = true
}

variable "backup_vault_retention_days" {
  description = "AWS Backup: how long daily snapshots stay in the vault (beyond Aurora's own PITR window)."
  type        = number
  default     = 90
}

variable "proxy_auth_secret_arns" {
  description = "Secrets (JSON username/password) of the database roles that connect through the proxy: app, worker, owner."
  type        = list(string)
}

variable "secrets_kms_key_arn" {
  description = "The CMK of those secrets (the proxy decrypts them)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
