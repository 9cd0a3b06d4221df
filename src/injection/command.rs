//! The `inject` command and the injection flags it shares with `serve`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::clouds::azure::{AzureSettings, authority_host};
use super::clouds::gcp::GcpSettings;
use super::config::{InjectionConfig, InjectionSettings, go_bool_flag};
use super::inject::Injector;
use super::manifest;
use crate::error::ConfigError;

/// The annotation prefix and default audience: what `serve`, `inject` and `doctor` must agree on.
#[derive(Debug, Args)]
pub struct AnnotationArgs {
    /// Prefix of the ServiceAccount and pod annotations.
    #[arg(
        long,
        env = "IRSA_ANNOTATION_PREFIX",
        default_value = "eks.amazonaws.com"
    )]
    annotation_prefix: String,
    /// Default token audience.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = "sts.amazonaws.com")]
    token_audience: String,
}

impl AnnotationArgs {
    /// These two settings, the reference webhook's defaults for the rest.
    pub fn settings(&self) -> InjectionSettings<'_> {
        InjectionSettings {
            annotation_prefix: &self.annotation_prefix,
            token_audience: &self.token_audience,
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
    #[arg(long, env = "IRSA_TOKEN_EXPIRATION", default_value_t = 86_400)]
    token_expiration: i64,
    /// Where the token volume is mounted in containers.
    #[arg(
        long,
        env = "IRSA_TOKEN_MOUNT_PATH",
        default_value = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
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
        default_value = "AzurePublicCloud"
    )]
    azure_environment: String,
    /// Audience of Azure tokens.
    #[arg(
        long,
        env = "IRSA_AZURE_TOKEN_AUDIENCE",
        default_value = "api://AzureADTokenExchange"
    )]
    azure_token_audience: String,
    /// Where the Azure token volume is mounted (azure-workload-identity's path; the AKS-managed
    /// webhook uses /var/run/secrets/azure/wi/token).
    #[arg(
        long,
        env = "IRSA_AZURE_TOKEN_MOUNT_PATH",
        default_value = "/var/run/secrets/azure/tokens"
    )]
    azure_token_mount_path: String,
    /// Where the Google Cloud token and credential configuration are mounted.
    #[arg(
        long,
        env = "IRSA_GCP_TOKEN_MOUNT_PATH",
        default_value = "/var/run/secrets/gcp/workload-identity"
    )]
    gcp_token_mount_path: String,
}

/// `value` trimmed, refused when empty.
fn non_empty(value: &str, flag: &'static str) -> Result<String, ConfigError> {
    match value.trim() {
        "" => Err(ConfigError::Invalid {
            flag,
            value: value.to_owned(),
            reason: "must not be empty",
        }),
        v => Ok(v.to_owned()),
    }
}

/// An absolute path without a trailing slash.
fn absolute(value: &str, flag: &'static str) -> Result<String, ConfigError> {
    let path = value.trim_end_matches('/');
    if !path.starts_with('/') || path.contains("//") || path.contains(':') {
        return Err(ConfigError::Invalid {
            flag,
            value: value.to_owned(),
            reason: "must be an absolute path without ':' or empty segments",
        });
    }
    Ok(path.to_owned())
}

impl InjectionArgs {
    /// The validated settings; what is accepted but looks wrong is logged as a warning.
    pub fn config(&self) -> Result<InjectionConfig> {
        let mut cfg = InjectionConfig::new(InjectionSettings {
            token_expiration: self.token_expiration,
            token_mount_path: &self.token_mount_path,
            aws_default_region: self.aws_default_region.as_deref(),
            sts_regional_endpoint: self.sts_regional_endpoint,
            sts_endpoint: self.sts_endpoint.as_deref(),
            role_session_name: self.role_session_name_from_pod,
            ..self.annotations.settings()
        })?;
        cfg.azure = AzureSettings {
            tenant_id: self
                .azure_tenant_id
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            authority_host: authority_host(&self.azure_environment)
                .ok_or_else(|| ConfigError::Invalid {
                    flag: "--azure-environment",
                    value: self.azure_environment.clone(),
                    reason: "must be AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud",
                })?
                .to_owned(),
            audience: non_empty(&self.azure_token_audience, "--azure-token-audience")?,
            mount_path: absolute(&self.azure_token_mount_path, "--azure-token-mount-path")?,
        };
        cfg.gcp = GcpSettings {
            mount_path: absolute(&self.gcp_token_mount_path, "--gcp-token-mount-path")?,
        };
        for doubt in cfg.doubts() {
            tracing::warn!("{doubt}");
        }
        Ok(cfg)
    }
}

/// `inject`: flags.
#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    injection: InjectionArgs,
    /// Manifest to read (`-` for standard input); repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        env = "IRSA_INJECT_FILES",
        value_delimiter = ',',
        required = true
    )]
    files: Vec<PathBuf>,
    /// YAML with ServiceAccounts (also read from the input itself); repeatable.
    #[arg(
        long = "service-account",
        env = "IRSA_INJECT_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    service_accounts: Vec<PathBuf>,
    /// Namespace of objects that set none.
    #[arg(short, long, env = "IRSA_NAMESPACE", default_value = "default")]
    namespace: String,
}

/// Reads the manifests and ServiceAccounts, prints the mutated YAML and the warnings.
pub fn run(args: InjectArgs) -> Result<()> {
    let cfg = args.injection.config()?;
    let read = |path: &PathBuf| -> Result<(String, String)> {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            Ok(("<stdin>".to_owned(), text))
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path.display().to_string(), text))
        }
    };
    let mut inputs = Vec::new();
    for path in &args.files {
        let (name, text) = read(path)?;
        inputs.push((manifest::parse(&text, &name)?, name));
    }
    let mut service_accounts = Vec::new();
    for path in &args.service_accounts {
        let (name, text) = read(path)?;
        let docs = manifest::parse(&text, &name)?;
        service_accounts.extend(manifest::service_accounts(
            &docs,
            &args.namespace,
            &cfg,
            &name,
        )?);
    }
    for (docs, name) in &inputs {
        service_accounts.extend(manifest::service_accounts(
            docs,
            &args.namespace,
            &cfg,
            name,
        )?);
    }
    let injector = Injector::new(&cfg, &args.namespace, service_accounts);

    let mut out = String::new();
    for (docs, name) in &mut inputs {
        for doc in docs.iter_mut() {
            for report in injector.inject(doc, name)? {
                for warning in &report.warnings {
                    eprintln!(
                        "warning: {name}: document {} ({}): {warning}",
                        doc.number, report.object
                    );
                }
            }
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&serde_saphyr::to_string(&doc.value).context("cannot write YAML")?);
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        inject: InjectArgs,
    }

    #[test]
    fn bool_flag_accepts_bare_and_explicit_forms() {
        for (args, expected) in [
            (&["x", "-f", "a"][..], false),
            (&["x", "-f", "a", "--sts-regional-endpoint"], true),
            (&["x", "-f", "a", "--sts-regional-endpoint=false"], false),
            (&["x", "-f", "a", "--sts-regional-endpoint=1"], true),
            (&["x", "-f", "a", "--sts-regional-endpoint=F"], false),
        ] {
            let cmd = Cmd::try_parse_from(args).unwrap();
            assert_eq!(cmd.inject.injection.sts_regional_endpoint, expected);
        }
    }
}
