variable "name" {
  description = "Name prefix (kassa-<env>)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "data_subnet_ids" {
  description = "One broker per subnet (three zones)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Who may connect: the EKS nodes' security group."
  type        = list(string)
}

variable "kafka_version" {
  description = "Apache Kafka version of the cluster."
  type        = string
  default     = "3.6.0"
}

variable "broker_instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "broker_volume_gb" {
  description = "EBS storage per broker."
  type        = number
  default     = 500
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "scram_secret_arns" {
  description = "Secrets Manager secrets (AmazonMSK_ prefix, customer-managed key) holding the SCRAM users."
  type        = list(string)
}
