variable "name" {
  description = "Name prefix (kassa-<env>)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "data_subnet_ids" {
  description = "Subnets of the cache (three zones, no internet route)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Who may connect: the EKS nodes' security group."
  type        = list(string)
}

variable "node_type" {
  description = "Cache node type."
  type        = string
  default     = "cache.t4g.medium"
}

variable "replicas_per_shard" {
  description = "Replicas of the primary (at least one for automatic failover)."
  type        = number
  default     = 2
}

variable "auth_token" {
  description = "AUTH token (from the secrets module)."
  type        = string
  sensitive   = true
}

variable "snapshot_retention_days" {
  description = "Daily snapshots kept."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
