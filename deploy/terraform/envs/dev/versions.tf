terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.80.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.6.3"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "2.16.1"
    }
  }
  # State in an encrypted, versioned S3 bucket with locking; the bucket is created once per
  # account (docs/deploy.md): terraform init -backend-config=bucket=<state bucket>
  backend "s3" {
    key          = "kassa/dev/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}
