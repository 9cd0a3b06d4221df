variable "issuer_url" {
  description = "The cluster's ServiceAccount issuer, exactly as the API server's --service-account-issuer and the discovery server's issuerUrl."
  type        = string
}

variable "role_name" {
  description = "Name of the IAM role the ServiceAccount assumes."
  type        = string
}

variable "kubernetes_namespace" {
  description = "Namespace of the ServiceAccount."
  type        = string
}

variable "kubernetes_service_account" {
  description = "Name of the ServiceAccount that assumes the role."
  type        = string
}

variable "aws_region" {
  description = "Region the AWS provider talks to (IAM itself is global)."
  type        = string
  default     = "us-east-1"
}

variable "policy_arns" {
  description = "ARNs of managed policies to attach to the role, e.g. arn:aws:iam::aws:policy/ReadOnlyAccess."
  type        = list(string)
  default     = []
}
