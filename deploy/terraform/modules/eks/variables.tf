variable "name" {
  description = "Cluster name (kassa-<env>)."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the Helm chart is validated against this version's schemas)."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the nodes and the control plane's network interfaces."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Subnets of the internet-facing load balancer."
  type        = list(string)
}

variable "endpoint_public_access" {
  description = "Whether the Kubernetes API is reachable from the internet (restricted by endpoint_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "Who may reach a public Kubernetes API endpoint (the CI runners' egress, an office VPN)."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "Managed node groups: name => {instance_types, min_size, max_size, desired_size}."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    capacity_type  = optional(string, "ON_DEMAND")
  }))
}

variable "app_namespace" {
  description = "Namespace of the kassa release (the IRSA role trusts its service account only)."
  type        = string
  default     = "kassa"
}

variable "app_service_account" {
  description = "Service account of the kassa pods (the chart's fullname)."
  type        = string
  default     = "kassa"
}

variable "app_secret_arns" {
  description = "Secrets Manager secrets the kassa pods may read (through External Secrets)."
  type        = list(string)
}

variable "secrets_kms_key_arn" {
  description = "The CMK that encrypts those secrets (the pods need kms:Decrypt on it)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
