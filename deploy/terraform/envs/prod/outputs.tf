output "kassa" {
  description = "What the Helm values and docs/deploy.md need from this environment."
  value = {
    cluster_name        = module.kassa.cluster_name
    app_role_arn        = module.kassa.app_role_arn
    ingress_lb_sg       = module.kassa.ingress_lb_security_group_id
    database_proxy      = module.kassa.database_proxy_endpoint
    kafka_bootstrap     = module.kassa.kafka_bootstrap
    nats_url            = module.kassa.nats_url
    data_subnet_cidrs   = module.kassa.data_subnet_cidrs
  }
}
