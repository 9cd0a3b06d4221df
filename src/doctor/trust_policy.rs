//! The IAM trust policy that lets exactly some ServiceAccounts assume a role through the
//! cluster's OIDC provider. Pure: issuer, subjects and options in, policy JSON out.

use serde_json::{Value, json};

use crate::discovery::document::IssuerUrl;

/// AWS partitions a role can live in.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// What the trust policy is for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub issuer: &'a IssuerUrl,
    /// `(namespace, name)`; either may hold `*` or `?` wildcards.
    pub service_accounts: &'a [(String, String)],
    pub audience: &'a str,
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
    #[error("--audience must not be empty")]
    Audience,
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
    let url = issuer.as_str();
    let rest = url.strip_prefix("https://").unwrap_or(url);
    rest.strip_suffix('/').unwrap_or(rest).to_owned()
}

/// The trust policy, keys in the order IAM shows them.
pub fn render(request: &Request<'_>) -> Result<Value, PolicyError> {
    if request.service_accounts.is_empty() {
        return Err(PolicyError::NoServiceAccount);
    }
    if let Some(id) = request.account_id
        && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(PolicyError::Account(id.to_owned()));
    }
    if !PARTITIONS.contains(&request.partition) {
        return Err(PolicyError::Partition(request.partition.to_owned()));
    }
    if request.audience.trim().is_empty() {
        return Err(PolicyError::Audience);
    }
    let provider = provider(request.issuer);
    let subjects: Vec<String> = request
        .service_accounts
        .iter()
        .map(|(ns, name)| format!("system:serviceaccount:{ns}:{name}"))
        .collect();
    let wildcard = subjects.iter().any(|s| s.contains(['*', '?']));
    let subject = match subjects.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let aud = (format!("{provider}:aud"), json!(request.audience));
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
            audience: "sts.amazonaws.com",
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
