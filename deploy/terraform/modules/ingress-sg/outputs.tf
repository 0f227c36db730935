output "id" {
  description = "The security group."
  value       = aws_security_group.this.id
}
