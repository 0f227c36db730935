# A security group for a data service: one TCP port, reachable only from the named client
# security groups. No CIDR rule exists in this module, so nothing built on it can be opened to a
# network range by accident. Egress stays closed (a group without egress rules sends nothing).

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:the calling module attaches the group through the id output (RDS, RDS Proxy, ElastiCache, MSK); checkov does not follow outputs
  name        = var.name
  description = var.description
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_clients" {
  count                        = length(var.client_security_group_ids)
  security_group_id            = aws_security_group.this.id
  description                  = "Port ${var.port} from client group ${count.index}"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = var.client_security_group_ids[count.index]
}
