output "arn" {
  description = "ARN of the IAM OIDC provider."
  value       = aws_iam_openid_connect_provider.this.arn
}

# The resource's own url attribute is what IAM returns, without https://; this is the issuer as
# given. depends_on makes whatever reads it (modules/role) wait for the provider, so a role is
# never created trusting a provider that does not exist yet.
output "url" {
  description = "The issuer URL the provider was created for, https:// included (pass it on to modules/role)."
  value       = var.issuer_url
  depends_on  = [aws_iam_openid_connect_provider.this]
}

output "provider" {
  description = "The provider's name in IAM: the issuer without https:// and one trailing slash."
  value       = local.provider
  depends_on  = [aws_iam_openid_connect_provider.this]
}
