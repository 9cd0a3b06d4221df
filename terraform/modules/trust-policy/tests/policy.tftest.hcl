# The policies `irsa-webhook trust-policy` writes for the same settings
# (src/doctor/trust_policy/mod.rs), compared in full where the shape matters. Offline:
# `terraform test` or `tofu test`.

variables {
  issuer_url       = "https://oidc.example.com"
  service_accounts = ["shop/app"]
}

run "one_subject_issuer_with_a_path_and_a_trailing_slash" {
  command = plan

  variables {
    issuer_url = "https://bucket.s3.eu-west-1.amazonaws.com/clusters/a/"
    account_id = "111122223333"
  }

  assert {
    condition = jsondecode(output.json) == {
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Federated = "arn:aws:iam::111122223333:oidc-provider/bucket.s3.eu-west-1.amazonaws.com/clusters/a" }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "bucket.s3.eu-west-1.amazonaws.com/clusters/a:aud" = "sts.amazonaws.com"
            "bucket.s3.eu-west-1.amazonaws.com/clusters/a:sub" = "system:serviceaccount:shop:app"
          }
        }
      }]
    }
    error_message = "unexpected policy: ${output.json}"
  }
  assert {
    condition     = output.provider == "bucket.s3.eu-west-1.amazonaws.com/clusters/a"
    error_message = "provider must drop https:// and the trailing slash, keep the path: ${output.provider}"
  }
  assert {
    condition     = output.provider_arn == "arn:aws:iam::111122223333:oidc-provider/bucket.s3.eu-west-1.amazonaws.com/clusters/a"
    error_message = "unexpected provider_arn: ${output.provider_arn}"
  }
  assert {
    condition     = output.subjects == ["system:serviceaccount:shop:app"]
    error_message = "unexpected subjects: ${jsonencode(output.subjects)}"
  }
  assert {
    condition     = output.wildcard == false
    error_message = "shop/app has no wildcard"
  }
  assert {
    condition     = jsonencode(output.policy) == output.json
    error_message = "the policy and json outputs differ"
  }
}

run "issuer_with_a_path_and_no_trailing_slash" {
  command = plan

  variables {
    issuer_url = "https://oidc.example.com/clusters/prod"
  }

  assert {
    condition     = output.provider == "oidc.example.com/clusters/prod"
    error_message = "unexpected provider: ${output.provider}"
  }
  assert {
    condition = output.policy.Statement[0].Condition == {
      StringEquals = {
        "oidc.example.com/clusters/prod:aud" = "sts.amazonaws.com"
        "oidc.example.com/clusters/prod:sub" = "system:serviceaccount:shop:app"
      }
    }
    error_message = "unexpected condition: ${jsonencode(output.policy.Statement[0].Condition)}"
  }
}

run "bare_host" {
  command = plan

  assert {
    condition     = output.provider == "oidc.example.com"
    error_message = "unexpected provider: ${output.provider}"
  }
  assert {
    condition     = output.provider_arn == "arn:aws:iam::ACCOUNT_ID:oidc-provider/oidc.example.com"
    error_message = "unexpected provider_arn: ${output.provider_arn}"
  }
}

run "bare_host_with_a_trailing_slash" {
  command = plan

  variables {
    issuer_url = "https://oidc.example.com/"
  }

  assert {
    condition     = output.provider == "oidc.example.com"
    error_message = "unexpected provider: ${output.provider}"
  }
  assert {
    condition     = keys(output.policy.Statement[0].Condition.StringEquals) == ["oidc.example.com:aud", "oidc.example.com:sub"]
    error_message = "unexpected condition keys: ${jsonencode(keys(output.policy.Statement[0].Condition.StringEquals))}"
  }
}

run "several_subjects_in_order_as_a_list" {
  command = plan

  variables {
    service_accounts = ["b/y", "a/x"]
    partition        = "aws-cn"
  }

  assert {
    condition = jsondecode(output.json) == {
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Federated = "arn:aws-cn:iam::ACCOUNT_ID:oidc-provider/oidc.example.com" }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "oidc.example.com:aud" = "sts.amazonaws.com"
            "oidc.example.com:sub" = ["system:serviceaccount:b:y", "system:serviceaccount:a:x"]
          }
        }
      }]
    }
    error_message = "unexpected policy: ${output.json}"
  }
  assert {
    condition     = output.subjects == ["system:serviceaccount:b:y", "system:serviceaccount:a:x"]
    error_message = "subjects must keep the given order: ${jsonencode(output.subjects)}"
  }
}

run "a_wildcard_makes_string_like_and_keeps_the_audience_exact" {
  command = plan

  variables {
    service_accounts = ["team/*"]
    partition        = "aws-us-gov"
  }

  assert {
    condition = jsondecode(output.json) == {
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Federated = "arn:aws-us-gov:iam::ACCOUNT_ID:oidc-provider/oidc.example.com" }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = { "oidc.example.com:aud" = "sts.amazonaws.com" }
          StringLike   = { "oidc.example.com:sub" = "system:serviceaccount:team:*" }
        }
      }]
    }
    error_message = "unexpected policy: ${output.json}"
  }
  assert {
    condition     = output.wildcard
    error_message = "team/* has a wildcard"
  }
}

run "one_wildcard_among_exact_names_puts_all_subjects_under_string_like" {
  command = plan

  variables {
    service_accounts = ["shop/app", "ci-?/runner", "team/*"]
  }

  assert {
    condition = output.policy.Statement[0].Condition == {
      StringEquals = { "oidc.example.com:aud" = "sts.amazonaws.com" }
      StringLike = {
        "oidc.example.com:sub" = [
          "system:serviceaccount:shop:app",
          "system:serviceaccount:ci-?:runner",
          "system:serviceaccount:team:*",
        ]
      }
    }
    error_message = "unexpected condition: ${jsonencode(output.policy.Statement[0].Condition)}"
  }
}

run "a_question_mark_alone_is_a_wildcard" {
  command = plan

  variables {
    service_accounts = ["shop/app-?"]
  }

  assert {
    condition     = output.policy.Statement[0].Condition.StringLike == { "oidc.example.com:sub" = "system:serviceaccount:shop:app-?" }
    error_message = "unexpected condition: ${jsonencode(output.policy.Statement[0].Condition)}"
  }
}

run "one_audience_is_a_string" {
  command = plan

  variables {
    audiences = ["irsa.example.com"]
  }

  assert {
    condition     = output.policy.Statement[0].Condition.StringEquals["oidc.example.com:aud"] == "irsa.example.com"
    error_message = "unexpected condition: ${jsonencode(output.policy.Statement[0].Condition)}"
  }
}

run "several_audiences_are_a_list_also_beside_a_wildcard" {
  command = plan

  variables {
    audiences        = ["sts.amazonaws.com", "irsa.example.com"]
    service_accounts = ["team/*"]
  }

  assert {
    condition = output.policy.Statement[0].Condition == {
      StringEquals = { "oidc.example.com:aud" = ["sts.amazonaws.com", "irsa.example.com"] }
      StringLike   = { "oidc.example.com:sub" = "system:serviceaccount:team:*" }
    }
    error_message = "unexpected condition: ${jsonencode(output.policy.Statement[0].Condition)}"
  }
}

run "partition_aws_is_the_default" {
  command = plan

  variables {
    account_id = "111122223333"
  }

  assert {
    condition     = output.provider_arn == "arn:aws:iam::111122223333:oidc-provider/oidc.example.com"
    error_message = "unexpected provider_arn: ${output.provider_arn}"
  }
  assert {
    condition     = output.policy.Statement[0].Principal.Federated == output.provider_arn
    error_message = "the policy's principal is not provider_arn: ${output.json}"
  }
}

run "partition_aws_cn" {
  command = plan

  variables {
    account_id = "111122223333"
    partition  = "aws-cn"
  }

  assert {
    condition     = output.policy.Statement[0].Principal.Federated == "arn:aws-cn:iam::111122223333:oidc-provider/oidc.example.com"
    error_message = "unexpected principal: ${output.json}"
  }
}

run "partition_aws_us_gov" {
  command = plan

  variables {
    account_id = "111122223333"
    partition  = "aws-us-gov"
  }

  assert {
    condition     = output.policy.Statement[0].Principal.Federated == "arn:aws-us-gov:iam::111122223333:oidc-provider/oidc.example.com"
    error_message = "unexpected principal: ${output.json}"
  }
}

run "no_account_writes_the_account_id_placeholder" {
  command = plan

  variables {
    account_id = null
  }

  assert {
    condition     = output.policy.Statement[0].Principal.Federated == "arn:aws:iam::ACCOUNT_ID:oidc-provider/oidc.example.com"
    error_message = "unexpected principal: ${output.json}"
  }
}

run "longest_names_digits_dots_and_dashes_are_accepted" {
  command = plan

  variables {
    # A namespace of 253 characters, the most Kubernetes allows.
    service_accounts = ["abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc/kube-system.v2-0"]
  }

  assert {
    condition     = output.subjects == ["system:serviceaccount:abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc:kube-system.v2-0"]
    error_message = "unexpected subjects: ${jsonencode(output.subjects)}"
  }
}
