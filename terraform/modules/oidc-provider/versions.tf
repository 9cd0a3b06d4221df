terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # thumbprint_list became optional in 5.81.0 (hashicorp/terraform-provider-aws#37255);
      # before it, leaving thumbprints out fails with "thumbprint_list is required".
      version = ">= 5.81"
    }
  }
}
