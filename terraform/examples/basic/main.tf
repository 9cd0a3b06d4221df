# One IAM OIDC provider for the cluster's issuer, and one role that exactly one ServiceAccount
# can assume through it. More roles: more module "role" blocks with the same issuer_url.

module "oidc_provider" {
  source = "../../modules/oidc-provider"

  issuer_url = var.issuer_url
}

module "role" {
  source = "../../modules/role"

  name = var.role_name
  # From the provider module, so the role is created after the provider it trusts.
  issuer_url          = module.oidc_provider.url
  service_accounts    = ["${var.kubernetes_namespace}/${var.kubernetes_service_account}"]
  managed_policy_arns = toset(var.policy_arns)
}
