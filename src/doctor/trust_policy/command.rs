//! The `trust-policy` command.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::{self as trust_policy, Request};
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
    /// Audience of the token (the webhook's --token-audience); repeatable, any of them is allowed.
    #[arg(
        long = "audience",
        env = "IRSA_TOKEN_AUDIENCE",
        value_delimiter = ',',
        default_value = "sts.amazonaws.com"
    )]
    audiences: Vec<String>,
    /// AWS account of the role and the OIDC provider; without it, ACCOUNT_ID is written.
    #[arg(long, env = "IRSA_AWS_ACCOUNT_ID")]
    account_id: Option<String>,
    /// AWS partition: aws, aws-cn or aws-us-gov.
    #[arg(long, env = "IRSA_AWS_PARTITION", default_value = "aws")]
    partition: String,
    /// `json`: the policy document; `terraform`: the call of terraform/modules/role that
    /// creates a role with it.
    #[arg(long, env = "IRSA_TRUST_POLICY_FORMAT", value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Name of the role in `--format terraform`.
    #[arg(long, env = "IRSA_ROLE_NAME", default_value = "ROLE_NAME")]
    role_name: String,
    /// `source` of the module in `--format terraform`: where your configuration finds this
    /// repository's terraform/modules/role (a path, or a git source pinned with ?ref=).
    #[arg(long, env = "IRSA_TERRAFORM_SOURCE", default_value = trust_policy::TERRAFORM_SOURCE)]
    terraform_source: String,
}

/// What `trust-policy` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Terraform,
}

/// Prints the trust policy as JSON or as a Terraform module call.
pub fn run(args: TrustPolicyArgs) -> Result<()> {
    let issuer = IssuerUrl::parse(&args.issuer_url)?;
    let request = Request {
        issuer: &issuer,
        service_accounts: &args.service_accounts,
        audiences: &args.audiences,
        account_id: args.account_id.as_deref(),
        partition: &args.partition,
    };
    let text = match args.format {
        Format::Json => {
            if args.account_id.is_none() {
                tracing::warn!(
                    "no --account-id: replace ACCOUNT_ID in the policy with your 12-digit account"
                );
            }
            let policy = trust_policy::render(&request)?;
            serde_json::to_string_pretty(&policy).context("cannot write JSON")? + "\n"
        }
        Format::Terraform => {
            if args.role_name == "ROLE_NAME" {
                tracing::warn!("no --role-name: replace ROLE_NAME with the role's name");
            }
            trust_policy::terraform(&request, &args.role_name, &args.terraform_source)?
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}
