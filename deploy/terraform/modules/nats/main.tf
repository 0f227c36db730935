# NATS JetStream in the EKS cluster (event_bus = "nats"): the official chart, three servers in
# three zones, file storage on encrypted gp3 volumes. Clients must authenticate: one user whose
# password is in Secrets Manager (kassa/<env>/nats, inside KASSA_NATS_URL); the server config
# holds only its bcrypt hash.

resource "helm_release" "nats" {
  name             = "nats"
  namespace        = var.namespace
  create_namespace = true
  repository       = "https://nats-io.github.io/k8s/helm/charts/"
  chart            = "nats"
  version          = var.chart_version
  atomic           = true

  values = [yamlencode({
    config = {
      cluster = { enabled = true, replicas = var.replicas }
      merge = {
        authorization = {
          users = [{ user = var.client_user, password = var.client_password_bcrypt }]
        }
      }
      jetstream = {
        enabled = true
        fileStore = {
          enabled = true
          pvc     = { size = var.jetstream_volume_size, storageClassName = "gp3-encrypted" }
        }
      }
    }
    podTemplate = {
      topologySpreadConstraints = {
        "topology.kubernetes.io/zone" = { maxSkew = 1, whenUnsatisfiable = "DoNotSchedule" }
      }
    }
  })]
}
