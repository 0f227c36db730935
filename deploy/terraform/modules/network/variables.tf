variable "name" {
  description = "Name prefix of every resource (kassa-<env>)."
  type        = string
}

variable "cidr" {
  description = "VPC CIDR block; split into public (load balancers), private (nodes) and data subnets."
  type        = string
}

variable "azs" {
  description = "Three availability zones: every tier spans all of them."
  type        = list(string)
  validation {
    condition     = length(var.azs) == 3
    error_message = "kassa runs across exactly three availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per zone (cheaper, for dev only)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs in CloudWatch."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
