# Looked up only when not given, so a plan with both set makes no AWS call for them.
data "aws_partition" "current" {
  count = var.partition == null ? 1 : 0
}

data "aws_caller_identity" "current" {
  count = var.account_id == null ? 1 : 0
}

module "trust_policy" {
  source = "../trust-policy"

  issuer_url       = var.issuer_url
  service_accounts = var.service_accounts
  audiences        = var.audiences
  account_id       = var.account_id != null ? var.account_id : data.aws_caller_identity.current[0].account_id
  partition        = var.partition != null ? var.partition : data.aws_partition.current[0].partition
}

resource "aws_iam_role" "this" {
  name                 = var.name
  path                 = var.path
  description          = var.description
  assume_role_policy   = module.trust_policy.json
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "managed" {
  for_each = var.managed_policy_arns

  role       = aws_iam_role.this.name
  policy_arn = each.value
}

resource "aws_iam_role_policy" "inline" {
  for_each = var.inline_policies

  role   = aws_iam_role.this.id
  name   = each.key
  policy = each.value
}
