variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "aurora_min_acu" {
  description = "Aurora minimum ACU; `kassa capacity plan` writes an override before live events."
  type        = number
  default     = null
}
