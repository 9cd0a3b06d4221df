variable "name" {
  description = "Name of the IAM role (1 to 64 of letters, digits and +=,.@_-)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.name))
    error_message = "name ${jsonencode(var.name)} must be 1 to 64 letters, digits and +=,.@_- (an IAM role name), e.g. \"shop-app\"."
  }
}

# The trust variables below are validated by modules/trust-policy, under the same names.

variable "issuer_url" {
  description = "The cluster's ServiceAccount issuer, exactly as the API server's --service-account-issuer (https://, a path allowed)."
  type        = string
  nullable    = false
}

variable "service_accounts" {
  description = "ServiceAccounts allowed to assume the role, NAMESPACE/NAME; * and ? wildcards make a StringLike condition."
  type        = list(string)
  nullable    = false
}

variable "audiences" {
  description = "Audiences (aud) the ServiceAccount tokens carry: the webhook's --token-audience."
  type        = list(string)
  default     = ["sts.amazonaws.com"]
  nullable    = false
}

variable "account_id" {
  description = "AWS account (12 digits) of the OIDC provider; null takes the account of the caller (aws_caller_identity)."
  type        = string
  default     = null
}

variable "partition" {
  description = "AWS partition: aws, aws-cn or aws-us-gov; null takes the provider's (aws_partition)."
  type        = string
  default     = null
}

variable "managed_policy_arns" {
  description = "ARNs of managed policies to attach to the role."
  type        = set(string)
  default     = []
  nullable    = false
}

variable "inline_policies" {
  description = "Inline policies of the role: name => policy JSON (e.g. from jsonencode or aws_iam_policy_document)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "max_session_duration" {
  description = "Longest session, in seconds, that assuming the role gives: 3600 to 43200."
  type        = number
  default     = 3600
  nullable    = false

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200 && floor(var.max_session_duration) == var.max_session_duration
    error_message = "max_session_duration ${var.max_session_duration} must be a whole number of seconds from 3600 (1 hour) to 43200 (12 hours)."
  }
}

variable "path" {
  description = "IAM path of the role, / or /SEGMENTS/."
  type        = string
  default     = "/"
  nullable    = false

  validation {
    condition     = can(regex("^/([\\x21-\\x7E]{0,510}/)?$", var.path)) && !strcontains(var.path, "//")
    error_message = "path ${jsonencode(var.path)} must begin and end with / and hold printable ASCII without spaces, at most 512 characters, e.g. \"/\" or \"/irsa/\"."
  }
}

variable "permissions_boundary" {
  description = "ARN of the managed policy that bounds the role's permissions, or null for none."
  type        = string
  default     = null
}

variable "description" {
  description = "Description of the role, or null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of the role."
  type        = map(string)
  default     = {}
  nullable    = false
}
