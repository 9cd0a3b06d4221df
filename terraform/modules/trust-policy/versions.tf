# No providers: the policy is computed from the variables alone, so this module can be planned
# and tested offline (`terraform test`, `tofu test`).
terraform {
  required_version = ">= 1.6"
}
