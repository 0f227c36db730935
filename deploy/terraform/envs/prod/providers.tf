provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "kassa", env = local.env }
  }
}

# The NATS choice installs its chart into the new cluster; the token comes from the AWS CLI.
provider "helm" {
  kubernetes {
    host                   = module.kassa.cluster_endpoint
    cluster_ca_certificate = base64decode(module.kassa.cluster_certificate_authority_data)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.kassa.cluster_name, "--region", var.region]
    }
  }
}
