//! The IAM trust policy that lets exactly some ServiceAccounts assume a role through the
//! cluster's OIDC provider: rendered here (pure: issuer, subjects and options in, policy JSON
//! out), evaluated in [`evaluate`], printed by [`command`].

use serde_json::{Value, json};

pub mod command;
pub mod evaluate;

use crate::discovery::document::IssuerUrl;
use crate::injection::config::{PARTITIONS, is_account_id};

/// What the trust policy is for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub issuer: &'a IssuerUrl,
    /// `(namespace, name)`; either may hold `*` or `?` wildcards.
    pub service_accounts: &'a [(String, String)],
    /// Token audiences; one is written as a string, several as a list (any of them).
    pub audiences: &'a [String],
    /// Twelve digits; `None` writes the placeholder `ACCOUNT_ID`.
    pub account_id: Option<&'a str>,
    pub partition: &'a str,
}

/// A setting of the trust policy that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("--service-account {0:?} must be NAMESPACE/NAME")]
    ServiceAccountForm(String),
    #[error(
        "--service-account {0:?}: namespace and name are lowercase letters, digits, '-' and '.' (wildcards * and ? allowed)"
    )]
    ServiceAccountName(String),
    #[error("give at least one --service-account")]
    NoServiceAccount,
    #[error("--account-id {0:?} must be 12 digits")]
    Account(String),
    #[error("--partition {0:?} must be one of aws, aws-cn, aws-us-gov")]
    Partition(String),
    #[error("--audience must be given and not be empty")]
    Audience,
    #[error("--role-name {0:?} must be 1 to 64 letters, digits and +=,.@_-")]
    RoleName(String),
}

/// Reads `NAMESPACE/NAME`.
pub fn parse_service_account(value: &str) -> Result<(String, String), PolicyError> {
    let (namespace, name) = value
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| PolicyError::ServiceAccountForm(value.to_owned()))?;
    let allowed = |s: &str| {
        s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*?".contains(&b))
    };
    if !allowed(namespace) || !allowed(name) {
        return Err(PolicyError::ServiceAccountName(value.to_owned()));
    }
    Ok((namespace.to_owned(), name.to_owned()))
}

/// The provider's name in IAM: the issuer without `https://` and without a trailing slash,
/// path included (`oidc.example.com/clusters/a`); also the prefix of its condition keys.
pub fn provider(issuer: &IssuerUrl) -> String {
    provider_path(issuer.as_str())
}

/// [`provider`] of an issuer URL not parsed yet.
pub fn provider_path(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    rest.strip_suffix('/').unwrap_or(rest).to_owned()
}

/// The trust policy, keys in the order IAM shows them.
pub fn render(request: &Request<'_>) -> Result<Value, PolicyError> {
    if request.service_accounts.is_empty() {
        return Err(PolicyError::NoServiceAccount);
    }
    if let Some(id) = request.account_id
        && !is_account_id(id)
    {
        return Err(PolicyError::Account(id.to_owned()));
    }
    if !PARTITIONS.contains(&request.partition) {
        return Err(PolicyError::Partition(request.partition.to_owned()));
    }
    if request.audiences.is_empty() || request.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(PolicyError::Audience);
    }
    let provider = provider(request.issuer);
    let subjects: Vec<String> = request
        .service_accounts
        .iter()
        .map(|(ns, name)| format!("system:serviceaccount:{ns}:{name}"))
        .collect();
    let wildcard = subjects.iter().any(|s| s.contains(['*', '?']));
    let aud = (format!("{provider}:aud"), one_or_many(request.audiences));
    let subject = one_or_many(&subjects);
    let sub = (format!("{provider}:sub"), subject);
    let condition = if wildcard {
        json!({"StringEquals": {aud.0: aud.1}, "StringLike": {sub.0: sub.1}})
    } else {
        json!({"StringEquals": {aud.0: aud.1, sub.0: sub.1}})
    };
    let account = request.account_id.unwrap_or("ACCOUNT_ID");
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:{}:iam::{account}:oidc-provider/{provider}", request.partition)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }],
    }))
}

/// A string for one value, a list for several: the shape IAM shows and `terraform/` renders.
fn one_or_many(values: &[String]) -> Value {
    match values {
        [one] => json!(one),
        many => json!(many),
    }
}

/// The Terraform module call (`terraform/modules/role`) that creates the role with this policy.
pub fn terraform(
    request: &Request<'_>,
    role_name: &str,
    source: &str,
) -> Result<String, PolicyError> {
    render(request)?;
    let valid_name = (1..=64).contains(&role_name.len())
        && role_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !valid_name {
        return Err(PolicyError::RoleName(role_name.to_owned()));
    }
    // JSON string syntax is HCL string syntax for these values: none can hold `${` or `%{`.
    let quote = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let list = |items: Vec<String>| {
        format!(
            "[{}]",
            items
                .iter()
                .map(|s| quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let service_accounts = request
        .service_accounts
        .iter()
        .map(|(ns, name)| format!("{ns}/{name}"))
        .collect();
    let mut lines = vec![
        format!("  name             = {}", quote(role_name)),
        format!("  issuer_url       = {}", quote(request.issuer.as_str())),
        format!("  service_accounts = {}", list(service_accounts)),
        format!("  audiences        = {}", list(request.audiences.to_vec())),
        format!("  partition        = {}", quote(request.partition)),
    ];
    if let Some(account) = request.account_id {
        lines.push(format!("  account_id       = {}", quote(account)));
    }
    Ok(format!(
        "module \"irsa_role\" {{\n  source = {}\n\n{}\n}}\n",
        quote(source),
        lines.join("\n")
    ))
}

/// Where the module call finds `terraform/modules/role` by default: this repository cloned (or
/// vendored, or a git submodule) next to the configuration, as in terraform/README.md. No
/// registry address is given while nothing is published.
pub const TERRAFORM_SOURCE: &str = "./irsa-webhook/terraform/modules/role";

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        issuer: &str,
        sas: &[&str],
        account: Option<&str>,
        partition: &str,
    ) -> Result<Value, PolicyError> {
        let issuer = IssuerUrl::parse(issuer).unwrap();
        let sas: Vec<(String, String)> = sas
            .iter()
            .map(|s| parse_service_account(s).unwrap())
            .collect();
        render(&Request {
            issuer: &issuer,
            service_accounts: &sas,
            audiences: &["sts.amazonaws.com".to_owned()],
            account_id: account,
            partition,
        })
    }

    #[test]
    fn one_service_account_on_an_issuer_with_a_path() {
        let p = policy(
            "https://bucket.s3.eu-west-1.amazonaws.com/clusters/a/",
            &["shop/app"],
            Some("111122223333"),
            "aws",
        )
        .unwrap();
        assert_eq!(
            p,
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/bucket.s3.eu-west-1.amazonaws.com/clusters/a"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        "bucket.s3.eu-west-1.amazonaws.com/clusters/a:aud": "sts.amazonaws.com",
                        "bucket.s3.eu-west-1.amazonaws.com/clusters/a:sub": "system:serviceaccount:shop:app",
                    }},
                }],
            })
        );
    }

    #[test]
    fn several_subjects_wildcards_partitions_and_the_account_placeholder() {
        let p = policy("https://oidc.example.com", &["a/x", "b/y"], None, "aws-cn").unwrap();
        let statement = &p["Statement"][0];
        assert_eq!(
            statement["Principal"]["Federated"],
            "arn:aws-cn:iam::ACCOUNT_ID:oidc-provider/oidc.example.com"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["oidc.example.com:sub"],
            json!(["system:serviceaccount:a:x", "system:serviceaccount:b:y"])
        );
        let p = policy("https://oidc.example.com", &["team/*"], None, "aws-us-gov").unwrap();
        let condition = &p["Statement"][0]["Condition"];
        assert_eq!(
            condition["StringLike"]["oidc.example.com:sub"],
            "system:serviceaccount:team:*"
        );
        assert_eq!(
            condition["StringEquals"],
            json!({"oidc.example.com:aud": "sts.amazonaws.com"})
        );
    }

    #[test]
    fn the_terraform_call_carries_every_setting() {
        let issuer = IssuerUrl::parse("https://o.example/c/").unwrap();
        let sas = [
            ("a".to_owned(), "x".to_owned()),
            ("b".to_owned(), "*".to_owned()),
        ];
        let audiences = ["sts.amazonaws.com".to_owned(), "other".to_owned()];
        let mut request = Request {
            issuer: &issuer,
            service_accounts: &sas,
            audiences: &audiences,
            account_id: Some("111122223333"),
            partition: "aws-cn",
        };
        assert_eq!(
            terraform(&request, "app", TERRAFORM_SOURCE).unwrap(),
            format!(
                "module \"irsa_role\" {{\n  source = \"{TERRAFORM_SOURCE}\"\n\n\
                 \x20 name             = \"app\"\n\
                 \x20 issuer_url       = \"https://o.example/c/\"\n\
                 \x20 service_accounts = [\"a/x\", \"b/*\"]\n\
                 \x20 audiences        = [\"sts.amazonaws.com\", \"other\"]\n\
                 \x20 partition        = \"aws-cn\"\n\
                 \x20 account_id       = \"111122223333\"\n}}\n"
            )
        );
        assert_eq!(
            terraform(&request, "no spaces", TERRAFORM_SOURCE),
            Err(PolicyError::RoleName("no spaces".into()))
        );
        request.account_id = None;
        assert!(
            !terraform(
                &request,
                "app",
                "git::https://example.com/x.git//role?ref=v1"
            )
            .unwrap()
            .contains("account_id")
        );
        let policy = render(&request).unwrap();
        assert_eq!(
            policy["Statement"][0]["Condition"]["StringEquals"]["o.example/c:aud"],
            json!(["sts.amazonaws.com", "other"])
        );
    }

    #[test]
    fn every_bad_setting_is_named() {
        assert_eq!(
            parse_service_account("app"),
            Err(PolicyError::ServiceAccountForm("app".into()))
        );
        assert_eq!(
            parse_service_account("a/b/c"),
            Err(PolicyError::ServiceAccountForm("a/b/c".into()))
        );
        assert_eq!(
            parse_service_account("Team/App"),
            Err(PolicyError::ServiceAccountName("Team/App".into()))
        );
        assert_eq!(
            policy("https://o.example", &["a/b"], Some("123"), "aws"),
            Err(PolicyError::Account("123".into()))
        );
        assert_eq!(
            policy("https://o.example", &["a/b"], None, "aws-mars"),
            Err(PolicyError::Partition("aws-mars".into()))
        );
        assert_eq!(
            policy("https://o.example", &[], None, "aws"),
            Err(PolicyError::NoServiceAccount)
        );
        assert_eq!(
            PolicyError::ServiceAccountForm("app".into()).to_string(),
            "--service-account \"app\" must be NAMESPACE/NAME"
        );
    }
}
