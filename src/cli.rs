//! Command line: the subcommands and the global flags. Every flag also reads an `IRSA_*`
//! environment variable; each command's flags and wiring live with its capability.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::serving::logging::{self, LogFormat};
use crate::{certs, discovery, doctor, injection, webhook};

/// IAM Roles for Service Accounts on any Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(
    name = "irsa-webhook",
    version,
    propagate_version = true,
    about,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, env = "IRSA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `irsa_webhook=debug,kube=warn` [default: `info` for
    /// `serve` and `discovery`, `warn` for the commands that print a result]
    #[arg(long, env = "IRSA_LOG_LEVEL", global = true)]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mutating admission webhook (HTTPS) and its health/metrics endpoint.
    Serve(Box<webhook::command::ServeArgs>),
    /// Serve the API server's OIDC discovery document and JWKS at the public issuer URL.
    Discovery(discovery::command::DiscoveryArgs),
    /// Print YAML with pods and pod templates mutated as the webhook would.
    Inject(injection::command::InjectArgs),
    /// Generate a CA and a serving certificate signed by it.
    Certs(certs::command::CertsArgs),
    /// Print the IAM trust policy that lets given ServiceAccounts assume a role.
    TrustPolicy(doctor::trust_policy::command::TrustPolicyArgs),
    /// Check the whole chain a pod's AWS identity depends on, and say how to fix what is wrong.
    Doctor(doctor::command::DoctorArgs),
}

impl Cli {
    /// Parses the command line and runs the command.
    pub fn parse_and_run() -> Result<()> {
        let cli = Cli::parse_from(webhook::compat::argv(std::env::args_os()));
        // A result printed by a one-shot command is not preceded by progress lines.
        let default_level = match cli.command {
            Command::Serve(_) | Command::Discovery(_) => "info",
            _ => "warn",
        };
        let level = cli.log_level.as_deref().unwrap_or(default_level);
        let _flush_logs = logging::init(cli.log_format, level)?;
        match cli.command {
            Command::Serve(args) => webhook::command::run(*args),
            Command::Discovery(args) => discovery::command::run(args),
            Command::Inject(args) => injection::command::run(args),
            Command::Certs(args) => certs::command::run(args),
            Command::TrustPolicy(args) => doctor::trust_policy::command::run(args),
            Command::Doctor(args) => doctor::command::run(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
