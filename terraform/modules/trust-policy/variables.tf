variable "issuer_url" {
  description = "The cluster's ServiceAccount issuer, exactly as the API server's --service-account-issuer (https://, a path allowed)."
  type        = string
  nullable    = false

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

variable "service_accounts" {
  description = "ServiceAccounts allowed to assume the role, NAMESPACE/NAME; * and ? wildcards make a StringLike condition."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.service_accounts) > 0
    error_message = "service_accounts must hold at least one NAMESPACE/NAME."
  }
  validation {
    condition     = alltrue([for sa in var.service_accounts : can(regex("^[^/]+/[^/]+$", sa))])
    error_message = "service_accounts entries must be NAMESPACE/NAME (one /, both parts non-empty); not: ${join(", ", [for sa in var.service_accounts : jsonencode(sa) if !can(regex("^[^/]+/[^/]+$", sa))])}."
  }
  validation {
    # Only checked once the form is right, so an entry gets one message, not two.
    condition = alltrue([
      for sa in var.service_accounts :
      !can(regex("^[^/]+/[^/]+$", sa)) || can(regex("^[-a-z0-9.*?]{1,253}/[-a-z0-9.*?]{1,253}$", sa))
    ])
    error_message = "service_accounts entries are NAMESPACE/NAME of lowercase letters, digits, '-' and '.' (wildcards * and ?), at most 253 characters each; not: ${join(", ", [for sa in var.service_accounts : jsonencode(sa) if can(regex("^[^/]+/[^/]+$", sa)) && !can(regex("^[-a-z0-9.*?]{1,253}/[-a-z0-9.*?]{1,253}$", sa))])}."
  }
}

variable "audiences" {
  description = "Audiences (aud) the ServiceAccount tokens carry: the webhook's --token-audience."
  type        = list(string)
  default     = ["sts.amazonaws.com"]
  nullable    = false

  validation {
    condition     = length(var.audiences) > 0 && alltrue([for aud in var.audiences : trimspace(aud) != ""])
    error_message = "audiences must hold at least one non-empty audience, e.g. [\"sts.amazonaws.com\"]."
  }
}

variable "account_id" {
  description = "AWS account (12 digits) of the role and the OIDC provider; null writes the placeholder ACCOUNT_ID."
  type        = string
  default     = null

  validation {
    condition     = var.account_id == null || can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id ${jsonencode(var.account_id)} must be 12 digits, e.g. \"111122223333\", or null for the ACCOUNT_ID placeholder."
  }
}

variable "partition" {
  description = "AWS partition of the role: aws, aws-cn or aws-us-gov."
  type        = string
  default     = "aws"
  nullable    = false

  validation {
    condition     = contains(["aws", "aws-cn", "aws-us-gov"], var.partition)
    error_message = "partition ${jsonencode(var.partition)} must be one of aws, aws-cn, aws-us-gov."
  }
}
