variable "name" {
  description = "Security group name."
  type        = string
}

variable "description" {
  description = "What the group protects and who may reach it."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "port" {
  description = "The one TCP port the clients may reach."
  type        = number
}

variable "client_security_group_ids" {
  description = "The security groups allowed in (never CIDR blocks: clients are named, not located)."
  type        = list(string)
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
