//! The injection flags, defined once: `serve` and `inject` flatten [`InjectionArgs`], `doctor`
//! the [`AnnotationArgs`] it needs; [`InjectionConfig::new`] validates them.

use anyhow::Result;
use clap::Args;

use super::config::{InjectionConfig, InjectionSettings, defaults, go_bool_flag};

/// What `serve`, `inject` and `doctor` must agree on: the annotation prefix, the default audience
/// and how role names become ARNs.
#[derive(Debug, Args)]
pub struct AnnotationArgs {
    /// Prefix of the ServiceAccount and pod annotations.
    #[arg(
        long,
        env = "IRSA_ANNOTATION_PREFIX",
        default_value = defaults::ANNOTATION_PREFIX
    )]
    annotation_prefix: String,
    /// Default token audience.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = defaults::TOKEN_AUDIENCE)]
    token_audience: String,
    /// A role-arn annotation without "arn:" is a role name (with an optional path) in
    /// --aws-account-id: `app` becomes arn:<partition>:iam::<account>:role/app.
    #[arg(long, env = "IRSA_COMPOSE_ROLE_ARN", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set,
          value_parser = go_bool_flag, value_name = "BOOL")]
    compose_role_arn: bool,
    /// The 12-digit account of composed role ARNs (--compose-role-arn).
    #[arg(long, env = "IRSA_AWS_ACCOUNT_ID")]
    aws_account_id: Option<String>,
    /// The partition of composed role ARNs: aws, aws-cn or aws-us-gov.
    #[arg(long, env = "IRSA_AWS_PARTITION", default_value = defaults::AWS_PARTITION)]
    aws_partition: String,
}

impl AnnotationArgs {
    /// These settings, the reference webhook's defaults for the rest.
    pub fn settings(&self) -> InjectionSettings<'_> {
        InjectionSettings {
            annotation_prefix: &self.annotation_prefix,
            token_audience: &self.token_audience,
            compose_role_arn: self.compose_role_arn,
            aws_account_id: self.aws_account_id.as_deref(),
            aws_partition: &self.aws_partition,
            ..InjectionSettings::default()
        }
    }
}

/// Injection settings shared by `serve` and `inject`; names follow the reference webhook.
#[derive(Debug, Args)]
pub struct InjectionArgs {
    #[command(flatten)]
    annotations: AnnotationArgs,
    /// Default token lifetime in seconds (600 to 4294967296).
    #[arg(long, env = "IRSA_TOKEN_EXPIRATION", default_value_t = defaults::TOKEN_EXPIRATION)]
    token_expiration: i64,
    /// Where the token volume is mounted in containers.
    #[arg(
        long,
        env = "IRSA_TOKEN_MOUNT_PATH",
        default_value = defaults::TOKEN_MOUNT_PATH
    )]
    token_mount_path: String,
    /// Region for AWS_REGION and AWS_DEFAULT_REGION when the ServiceAccount names none.
    #[arg(long, env = "IRSA_AWS_DEFAULT_REGION")]
    aws_default_region: Option<String>,
    /// Set AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount says otherwise.
    #[arg(long, env = "IRSA_STS_REGIONAL_ENDPOINT", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set,
          value_parser = go_bool_flag)]
    sts_regional_endpoint: bool,
    /// Set AWS_ENDPOINT_URL_STS (an on-premises or test STS) unless the ServiceAccount names one.
    #[arg(long, env = "IRSA_STS_ENDPOINT")]
    sts_endpoint: Option<String>,
    /// Set AWS_ROLE_SESSION_NAME to the pod's name (downward API), so CloudTrail names the pod;
    /// left out, with a warning, when the name cannot fit STS's 64 characters.
    #[arg(long, env = "IRSA_ROLE_SESSION_NAME_FROM_POD")]
    role_session_name_from_pod: bool,
    /// Azure tenant for ServiceAccounts without azure.workload.identity/tenant-id.
    #[arg(long, env = "IRSA_AZURE_TENANT_ID")]
    azure_tenant_id: Option<String>,
    /// Azure cloud of AZURE_AUTHORITY_HOST: AzurePublicCloud, AzureUSGovernmentCloud or
    /// AzureChinaCloud.
    #[arg(
        long,
        env = "IRSA_AZURE_ENVIRONMENT",
        default_value = defaults::AZURE_ENVIRONMENT
    )]
    azure_environment: String,
    /// Audience of Azure tokens.
    #[arg(
        long,
        env = "IRSA_AZURE_TOKEN_AUDIENCE",
        default_value = defaults::AZURE_TOKEN_AUDIENCE
    )]
    azure_token_audience: String,
    /// Where the Azure token volume is mounted (azure-workload-identity's path; the AKS-managed
    /// webhook uses /var/run/secrets/azure/wi/token).
    #[arg(
        long,
        env = "IRSA_AZURE_TOKEN_MOUNT_PATH",
        default_value = defaults::AZURE_TOKEN_MOUNT_PATH
    )]
    azure_token_mount_path: String,
    /// Where the Google Cloud token and credential configuration are mounted.
    #[arg(
        long,
        env = "IRSA_GCP_TOKEN_MOUNT_PATH",
        default_value = defaults::GCP_TOKEN_MOUNT_PATH
    )]
    gcp_token_mount_path: String,
}

impl InjectionArgs {
    /// The validated settings; what is accepted but looks wrong is logged as a warning.
    pub fn config(&self) -> Result<InjectionConfig> {
        let cfg = InjectionConfig::new(InjectionSettings {
            token_expiration: self.token_expiration,
            token_mount_path: &self.token_mount_path,
            aws_default_region: self.aws_default_region.as_deref(),
            sts_regional_endpoint: self.sts_regional_endpoint,
            sts_endpoint: self.sts_endpoint.as_deref(),
            role_session_name: self.role_session_name_from_pod,
            azure_tenant_id: self.azure_tenant_id.as_deref(),
            azure_environment: &self.azure_environment,
            azure_token_audience: &self.azure_token_audience,
            azure_token_mount_path: &self.azure_token_mount_path,
            gcp_token_mount_path: &self.gcp_token_mount_path,
            ..self.annotations.settings()
        })?;
        for doubt in cfg.doubts() {
            tracing::warn!("{doubt}");
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        injection: InjectionArgs,
    }

    #[test]
    fn bool_flag_accepts_bare_and_explicit_forms() {
        for (args, expected) in [
            (&["x"][..], false),
            (&["x", "--sts-regional-endpoint"], true),
            (&["x", "--sts-regional-endpoint=false"], false),
            (&["x", "--sts-regional-endpoint=1"], true),
            (&["x", "--sts-regional-endpoint=F"], false),
        ] {
            let cmd = Cmd::try_parse_from(args).unwrap();
            assert_eq!(cmd.injection.sts_regional_endpoint, expected);
        }
    }

    #[test]
    fn the_flag_defaults_are_the_settings_defaults() {
        let cmd = Cmd::try_parse_from(["x"]).unwrap();
        assert_eq!(cmd.injection.config().unwrap(), InjectionConfig::default());
    }

    #[test]
    fn every_cloud_is_validated_naming_its_flag() {
        for (flag, value, message) in [
            ("--token-mount-path", "relative", "must be an absolute path"),
            (
                "--azure-token-mount-path",
                "/a//b",
                "must be an absolute path",
            ),
            ("--gcp-token-mount-path", "C:/x", "must be an absolute path"),
            ("--azure-token-audience", " ", "must not be empty"),
            ("--token-audience", "", "must not be empty"),
            ("--azure-environment", "Mars", "must be AzurePublicCloud"),
            ("--token-expiration", "599", "must be between 600"),
            ("--aws-account-id", "12345", "must be 12 digits"),
            ("--aws-partition", "gcp", "must be aws, aws-cn"),
            ("--aws-partition", "aws-", "must be aws, aws-cn"),
        ] {
            let cmd = Cmd::try_parse_from(["x", &format!("{flag}={value}")]).unwrap();
            let err = cmd.injection.config().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{flag} {value:?} is invalid: {message}")),
                "{err}"
            );
        }
    }

    #[test]
    fn compose_role_arn_needs_an_account_and_says_so() {
        let doubts = |args: &[&str]| {
            let cmd = Cmd::try_parse_from(args).unwrap();
            let cfg = cmd.injection.config().unwrap();
            (cfg.compose.is_some(), cfg.doubts())
        };
        let (on, said) = doubts(&["x", "--compose-role-arn"]);
        assert!(!on);
        assert!(said[0].starts_with("--compose-role-arn has no effect without --aws-account-id"));
        let (on, said) = doubts(&["x", "--aws-account-id=111122223333"]);
        assert!(!on);
        assert_eq!(
            said,
            ["--aws-account-id has no effect without --compose-role-arn"]
        );
        let (on, said) = doubts(&[
            "x",
            "--compose-role-arn=true",
            "--aws-account-id",
            "111122223333",
        ]);
        assert!(on && said.is_empty(), "{said:?}");
        let (on, _) = doubts(&[
            "x",
            "--compose-role-arn=false",
            "--aws-account-id",
            "111122223333",
        ]);
        assert!(!on);
    }
}
