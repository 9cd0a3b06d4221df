resource "aws_iam_openid_connect_provider" "this" {
  # Verbatim: STS compares the token's iss with the provider's URL as strings, so a trailing
  # slash the API server's issuer has must be kept here too.
  url            = var.issuer_url
  client_id_list = var.client_ids
  # null leaves the argument out (see the variable's description).
  thumbprint_list = var.thumbprints
  tags            = var.tags
}

locals {
  # IAM's name for the provider, also the prefix of the trust policy's condition keys.
  provider = trimsuffix(trimprefix(var.issuer_url, "https://"), "/")
}
