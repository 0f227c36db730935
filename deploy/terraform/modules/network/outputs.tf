output "vpc_id" {
  description = "The VPC."
  value       = module.vpc.vpc_id
}

output "vpc_cidr" {
  description = "The VPC's CIDR block."
  value       = var.cidr
}

output "public_subnet_ids" {
  description = "Subnets for the internet-facing load balancer only."
  value       = module.vpc.public_subnets
}

output "private_subnet_ids" {
  description = "Subnets of the EKS nodes."
  value       = module.vpc.private_subnets
}

output "data_subnet_ids" {
  description = "Subnets of Aurora, RDS Proxy, MSK and ElastiCache (no internet route)."
  value       = module.vpc.database_subnets
}

output "data_subnet_cidrs" {
  description = "CIDR blocks of the data subnets (the Helm chart's NetworkPolicy egress targets)."
  value       = local.database_subnets
}
