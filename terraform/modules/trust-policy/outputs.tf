output "json" {
  description = "The trust policy as a JSON string, for aws_iam_role.assume_role_policy."
  value       = jsonencode(local.policy)
}

output "policy" {
  description = "The trust policy as an object (Version, Statement)."
  value       = local.policy
}

output "provider" {
  description = "The IAM OIDC provider's name: the issuer without https:// and one trailing slash."
  value       = local.provider
}

output "provider_arn" {
  description = "ARN of the IAM OIDC provider the policy trusts (ACCOUNT_ID when account_id is null)."
  value       = local.provider_arn
}

output "subjects" {
  description = "The sub claims allowed, system:serviceaccount:NAMESPACE:NAME, in the given order."
  value       = local.subjects
}

output "wildcard" {
  description = "Whether a subject holds * or ?, so the subject is matched with StringLike."
  value       = local.wildcard
}
