variable "env" {
  description = "Environment: dev, staging or prod."
  type        = string
  validation {
    condition     = contains(["dev", "staging", "prod"], var.env)
    error_message = "env is one of dev, staging, prod."
  }
}

variable "azs" {
  description = "The three availability zones."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "VPC CIDR block."
  type        = string
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (dev only)."
  type        = bool
  default     = false
}

variable "kubernetes_version" {
  description = "EKS version."
  type        = string
  default     = "1.33"
}

variable "endpoint_public_access" {
  description = "Kubernetes API reachable from the internet (restricted to endpoint_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "Who may reach a public Kubernetes API."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "EKS managed node groups."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    capacity_type  = optional(string, "ON_DEMAND")
  }))
}

variable "aurora_min_acu" {
  description = "Aurora Serverless v2 minimum ACU (raised by capacity plans before live events)."
  type        = number
}

variable "aurora_max_acu" {
  description = "Aurora Serverless v2 maximum ACU."
  type        = number
}

variable "aurora_instance_count" {
  description = "Aurora writer + readers."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Aurora backup and PITR retention."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Deletion protection of the database."
  type        = bool
  default     = true
}

variable "event_bus" {
  description = "msk (Amazon MSK) or nats (NATS JetStream inside the cluster)."
  type        = string
  default     = "msk"
  validation {
    condition     = contains(["msk", "nats"], var.event_bus)
    error_message = "event_bus is msk or nats."
  }
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "cache_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.medium"
}

variable "app_namespace" {
  description = "Namespace of the kassa Helm release."
  type        = string
  default     = "kassa"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
