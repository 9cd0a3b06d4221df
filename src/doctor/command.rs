//! The `trust-policy` command.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;

use super::trust_policy::{self, Request};
use crate::discovery::document::IssuerUrl;

/// `trust-policy`: flags.
#[derive(Debug, Args)]
pub struct TrustPolicyArgs {
    /// Public issuer URL, exactly as the API server's --service-account-issuer.
    #[arg(long, env = "IRSA_ISSUER_URL")]
    issuer_url: String,
    /// ServiceAccount allowed to assume the role, NAMESPACE/NAME (`*` and `?` wildcards make a
    /// StringLike condition); repeatable.
    #[arg(long = "service-account", env = "IRSA_TRUST_SERVICE_ACCOUNTS", value_delimiter = ',', required = true, value_parser = trust_policy::parse_service_account)]
    service_accounts: Vec<(String, String)>,
    /// Audience of the token (the webhook's --token-audience).
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = "sts.amazonaws.com")]
    audience: String,
    /// AWS account of the role and the OIDC provider; without it, ACCOUNT_ID is written.
    #[arg(long, env = "IRSA_AWS_ACCOUNT_ID")]
    account_id: Option<String>,
    /// AWS partition: aws, aws-cn or aws-us-gov.
    #[arg(long, env = "IRSA_AWS_PARTITION", default_value = "aws")]
    partition: String,
}

/// Prints the trust policy as JSON.
pub fn run(args: TrustPolicyArgs) -> Result<()> {
    let issuer = IssuerUrl::parse(&args.issuer_url)?;
    let policy = trust_policy::render(&Request {
        issuer: &issuer,
        service_accounts: &args.service_accounts,
        audience: &args.audience,
        account_id: args.account_id.as_deref(),
        partition: &args.partition,
    })?;
    if args.account_id.is_none() {
        tracing::warn!(
            "no --account-id: replace ACCOUNT_ID in the policy with your 12-digit account"
        );
    }
    let text = serde_json::to_string_pretty(&policy).context("cannot write JSON")?;
    writeln!(std::io::stdout(), "{text}").context("cannot write to standard output")?;
    Ok(())
}
