# Every bad setting is refused by its own variable's validation, and by no other (a run fails on
# any error it does not expect), before anything is planned.

variables {
  issuer_url       = "https://oidc.example.com"
  service_accounts = ["shop/app"]
}

run "the_defaults_above_are_valid" {
  command = plan

  assert {
    condition     = output.provider == "oidc.example.com"
    error_message = "unexpected provider: ${output.provider}"
  }
}

run "issuer_over_http" {
  command = plan
  variables {
    issuer_url = "http://oidc.example.com"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_without_scheme" {
  command = plan
  variables {
    issuer_url = "oidc.example.com"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_without_host" {
  command = plan
  variables {
    issuer_url = "https:///clusters/a"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_user_information" {
  command = plan
  variables {
    issuer_url = "https://user@oidc.example.com"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_a_query" {
  command = plan
  variables {
    issuer_url = "https://oidc.example.com/?cluster=a"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_a_fragment" {
  command = plan
  variables {
    issuer_url = "https://oidc.example.com/#a"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_a_space" {
  command = plan
  variables {
    issuer_url = "https://oidc.example.com/clusters a"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_a_trailing_newline" {
  command = plan
  variables {
    issuer_url = "https://oidc.example.com\n"
  }
  expect_failures = [var.issuer_url]
}

run "issuer_with_an_empty_path_segment" {
  command = plan
  variables {
    issuer_url = "https://oidc.example.com//clusters/a"
  }
  expect_failures = [var.issuer_url]
}

run "no_service_accounts" {
  command = plan
  variables {
    service_accounts = []
  }
  expect_failures = [var.service_accounts]
}

run "service_account_without_a_slash" {
  command = plan
  variables {
    service_accounts = ["app"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_with_two_slashes" {
  command = plan
  variables {
    service_accounts = ["shop/app/extra"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_without_a_namespace" {
  command = plan
  variables {
    service_accounts = ["/app"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_without_a_name" {
  command = plan
  variables {
    service_accounts = ["shop/"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_in_uppercase" {
  command = plan
  variables {
    service_accounts = ["Team/App"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_with_an_underscore" {
  command = plan
  variables {
    service_accounts = ["shop/my_app"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_with_a_colon" {
  command = plan
  variables {
    service_accounts = ["shop:app/x"]
  }
  expect_failures = [var.service_accounts]
}

run "one_bad_service_account_among_good_ones" {
  command = plan
  variables {
    service_accounts = ["shop/app", "team/*", "Team/App"]
  }
  expect_failures = [var.service_accounts]
}

run "service_account_name_over_253_characters" {
  command = plan
  variables {
    # A name of 254 characters.
    service_accounts = ["shop/abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd"]
  }
  expect_failures = [var.service_accounts]
}

run "no_audiences" {
  command = plan
  variables {
    audiences = []
  }
  expect_failures = [var.audiences]
}

run "an_empty_audience" {
  command = plan
  variables {
    audiences = ["sts.amazonaws.com", ""]
  }
  expect_failures = [var.audiences]
}

run "a_blank_audience" {
  command = plan
  variables {
    audiences = [" \t"]
  }
  expect_failures = [var.audiences]
}

run "account_of_11_digits" {
  command = plan
  variables {
    account_id = "11112222333"
  }
  expect_failures = [var.account_id]
}

run "account_of_13_digits" {
  command = plan
  variables {
    account_id = "1111222233334"
  }
  expect_failures = [var.account_id]
}

run "account_with_letters" {
  command = plan
  variables {
    account_id = "11112222333x"
  }
  expect_failures = [var.account_id]
}

run "account_as_the_placeholder_text" {
  command = plan
  variables {
    account_id = "ACCOUNT_ID"
  }
  expect_failures = [var.account_id]
}

run "unknown_partition" {
  command = plan
  variables {
    partition = "aws-mars"
  }
  expect_failures = [var.partition]
}

run "partition_in_uppercase" {
  command = plan
  variables {
    partition = "AWS"
  }
  expect_failures = [var.partition]
}
