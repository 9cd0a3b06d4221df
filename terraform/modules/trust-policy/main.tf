# The same policy as `irsa-webhook trust-policy` (src/doctor/trust_policy/mod.rs): compared as
# parsed JSON, the two must not differ (tests/it/terraform.rs checks that they do not).

locals {
  # IAM names the provider by the issuer without https:// and without one trailing slash, path
  # kept; its condition keys are "<provider>:aud" and "<provider>:sub".
  provider = trimsuffix(trimprefix(var.issuer_url, "https://"), "/")

  subjects = [
    for sa in var.service_accounts :
    "system:serviceaccount:${split("/", sa)[0]}:${split("/", sa)[1]}"
  ]
  wildcard = anytrue([for s in local.subjects : strcontains(s, "*") || strcontains(s, "?")])

  # One value is written as a string, several as a list. A conditional needs both results of
  # one type, and a string is not a list: both are encoded as JSON text, the right one is picked
  # and decoded.
  sub = jsondecode(length(local.subjects) == 1 ? jsonencode(local.subjects[0]) : jsonencode(local.subjects))
  aud = jsondecode(length(var.audiences) == 1 ? jsonencode(var.audiences[0]) : jsonencode(var.audiences))

  aud_key = "${local.provider}:aud"
  sub_key = "${local.provider}:sub"
  # Wildcards need StringLike, and only the subject may hold them; the audience stays exact.
  # The two shapes are different object types, hence the same JSON round trip.
  condition = jsondecode(local.wildcard ? jsonencode({
    StringEquals = { (local.aud_key) = local.aud }
    StringLike   = { (local.sub_key) = local.sub }
    }) : jsonencode({
    StringEquals = { (local.aud_key) = local.aud, (local.sub_key) = local.sub }
  }))

  provider_arn = "arn:${var.partition}:iam::${coalesce(var.account_id, "ACCOUNT_ID")}:oidc-provider/${local.provider}"

  policy = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = local.provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = local.condition
    }]
  }
}
