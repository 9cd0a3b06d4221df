output "role_arn" {
  description = "ARN of the role."
  value       = module.role.arn
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider."
  value       = module.oidc_provider.arn
}

output "service_account_annotation" {
  description = "The annotation to put on the ServiceAccount."
  value       = "eks.amazonaws.com/role-arn: ${module.role.arn}"
}
