# AWS Backup keeps daily snapshots of the cluster in a vault apart from the cluster (a deleted
# or corrupted cluster does not take them along), for longer than Aurora's own PITR window.
# docs/dr.md has the restore procedure and the RPO/RTO policy.

resource "aws_backup_vault" "this" {
  name        = "${var.name}-aurora"
  kms_key_arn = module.kms.arn
  tags        = var.tags
}

resource "aws_backup_plan" "this" {
  name = "${var.name}-aurora"
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this.name
    schedule          = "cron(0 3 * * ? *)"
    start_window      = 60
    completion_window = 360
    lifecycle {
      delete_after = var.backup_vault_retention_days
    }
  }
  tags = var.tags
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.name}-aurora-backup"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_selection" "this" {
  name         = "${var.name}-aurora"
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = [aws_rds_cluster.this.arn]
}
