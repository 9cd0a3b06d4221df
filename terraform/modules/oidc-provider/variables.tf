variable "issuer_url" {
  description = "The cluster's ServiceAccount issuer, exactly as the API server's --service-account-issuer (https://, a path allowed); becomes the provider's URL verbatim."
  type        = string
  nullable    = false

  # The same rules as modules/trust-policy, so a provider is never made for an issuer no role
  # could trust.
  validation {
    condition     = startswith(var.issuer_url, "https://")
    error_message = "issuer_url ${jsonencode(var.issuer_url)} must start with https:// (STS fetches the discovery document over HTTPS), e.g. https://oidc.example.com or https://bucket.s3.eu-west-1.amazonaws.com/clusters/a."
  }
  # The rules below judge only https:// URLs, so a wrong scheme gets one message, the one above.
  validation {
    condition     = !startswith(var.issuer_url, "https://") || can(regex("^https://[^/@]+(/|$)", var.issuer_url))
    error_message = "issuer_url ${jsonencode(var.issuer_url)} must be https://HOST or https://HOST/PATH: a host, no user information (user@)."
  }
  validation {
    condition     = !can(regex("[?#\\s\\p{Z}\\p{Cc}]", var.issuer_url))
    error_message = "issuer_url ${jsonencode(var.issuer_url)} must not have a query (?), a fragment (#), spaces or control characters: https://HOST or https://HOST/PATH."
  }
  validation {
    condition     = !startswith(var.issuer_url, "https://") || !strcontains(trimprefix(var.issuer_url, "https://"), "//")
    error_message = "issuer_url ${jsonencode(var.issuer_url)}: its path must not have empty segments (//): https://HOST or https://HOST/PATH."
  }
}

variable "client_ids" {
  description = "Audiences (client IDs) the provider accepts: the webhook's --token-audience, sts.amazonaws.com by default."
  type        = list(string)
  default     = ["sts.amazonaws.com"]
  nullable    = false

  validation {
    condition     = length(var.client_ids) > 0 && alltrue([for id in var.client_ids : trimspace(id) != ""])
    error_message = "client_ids must hold at least one non-empty audience, e.g. [\"sts.amazonaws.com\"]."
  }
}

variable "thumbprints" {
  description = "SHA-1 thumbprints (40 hex digits) of the issuer's certificate chain, or null to leave them out. Since 2023 AWS has not needed thumbprints for providers whose TLS certificate chains to a publicly trusted CA: IAM checks those with its own library of trusted root CAs, and ignores any thumbprint. They matter only for a private CA or a self-signed certificate. Left out, IAM records the top intermediate CA's thumbprint when it creates the provider."
  type        = list(string)
  default     = null

  validation {
    condition     = var.thumbprints == null || try(length(var.thumbprints) >= 1 && length(var.thumbprints) <= 5 && alltrue([for t in var.thumbprints : can(regex("^[0-9a-fA-F]{40}$", t))]), false)
    error_message = "thumbprints must be null or 1 to 5 SHA-1 thumbprints of 40 hex digits each, e.g. [\"9e99a48a9960b14926bb7f3b02e22da2b0ab7280\"]."
  }
}

variable "tags" {
  description = "Tags of the OIDC provider."
  type        = map(string)
  default     = {}
  nullable    = false
}
