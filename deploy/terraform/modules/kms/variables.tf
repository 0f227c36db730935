variable "name" {
  description = "Alias of the key (alias/<name>)."
  type        = string
}

variable "description" {
  description = "What the key encrypts."
  type        = string
}

variable "service_principals" {
  description = "AWS services (logs.<region>.amazonaws.com, ...) that use the key directly, besides IAM-authorised callers."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
