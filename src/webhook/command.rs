//! The `serve` command: flags and wiring of the admission webhook.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::server::{Webhook, webhook_router};
use super::serviceaccounts::Index;
use crate::certs::secret::CertSecret;
use crate::injection::command::InjectionArgs;
use crate::injection::manifest;
use crate::serving::health::health_router;
use crate::serving::metrics::count_reloads;
use crate::serving::server::Limits;
use crate::serving::tls::ReloadingConfig;
use crate::serving::{kube_client, server, signals};

/// `serve`: flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    injection: InjectionArgs,
    /// Address both listeners bind to.
    #[arg(long, env = "IRSA_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of POST /mutate.
    #[arg(long, env = "IRSA_PORT", default_value_t = 8443)]
    port: u16,
    /// Plain-HTTP port of /livez, /readyz and /metrics (never expose it publicly).
    #[arg(long, env = "IRSA_METRICS_PORT", default_value_t = 9999)]
    metrics_port: u16,
    /// PEM certificate chain; re-read when it changes.
    #[arg(
        long,
        env = "IRSA_TLS_CERT",
        required_unless_present = "cert_secret",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key; re-read when it changes.
    #[arg(long, env = "IRSA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Keep a self-managed CA and serving certificate in this Secret instead of --tls-cert/--tls-key.
    #[arg(long, env = "IRSA_CERT_SECRET", conflicts_with_all = ["tls_cert", "tls_key"],
          requires_all = ["cert_secret_namespace", "cert_dns"])]
    cert_secret: Option<String>,
    /// Namespace of --cert-secret (in a pod: its own namespace).
    #[arg(long, env = "IRSA_CERT_SECRET_NAMESPACE", requires = "cert_secret")]
    cert_secret_namespace: Option<String>,
    /// DNS names of the self-managed serving certificate (the Service's names); repeatable.
    #[arg(
        long,
        env = "IRSA_CERT_DNS",
        value_delimiter = ',',
        requires = "cert_secret"
    )]
    cert_dns: Vec<String>,
    /// MutatingWebhookConfiguration whose caBundle follows the self-managed CA.
    #[arg(long, env = "IRSA_WEBHOOK_CONFIG", requires = "cert_secret")]
    webhook_config: Option<String>,
    /// How often the self-managed certificate Secret is checked for renewal and changes.
    #[arg(long, env = "IRSA_CERT_CHECK_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    cert_check_interval: Duration,
    /// Kubeconfig to use instead of the in-cluster configuration (or $KUBECONFIG).
    #[arg(long, env = "IRSA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Read ServiceAccounts from this YAML file instead of watching a cluster.
    #[arg(
        long,
        env = "IRSA_SERVICE_ACCOUNTS_FILE",
        conflicts_with = "kubeconfig"
    )]
    service_accounts_file: Option<PathBuf>,
    /// Longest wait for the API server when a ServiceAccount is not in the index yet.
    #[arg(long, env = "IRSA_LOOKUP_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    lookup_timeout: Duration,
    /// Longest wait for in-flight requests after SIGTERM.
    #[arg(long, env = "IRSA_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
}

/// Runs the admission webhook and its health endpoint until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    let cfg = Arc::new(args.injection.config()?);
    let metrics = Arc::new(Metrics::default());
    let file_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ReloadingConfig::load(
            cert,
            key,
            count_reloads(&metrics.tls_reloads),
        )?),
        _ => None,
    };
    let runtime = server::runtime()?;
    runtime.block_on(async move {
        let client = match (&args.service_accounts_file, &args.cert_secret) {
            (Some(_), None) => None,
            _ => Some(
                kube_client::connect(
                    args.kubeconfig.as_deref(),
                    "pass --kubeconfig or --service-accounts-file",
                )
                .await?,
            ),
        };
        let tls = match file_tls {
            Some(tls) => Arc::new(tls),
            None => {
                let client = client.clone().expect("a client exists with --cert-secret");
                self_managed_tls(&args, client, &metrics).await?
            }
        };
        let index = match &args.service_accounts_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --service-accounts-file {}", path.display()))?;
                let name = path.display().to_string();
                let entries = manifest::service_accounts_in_text(&text, &name, "default", &cfg)?;
                tracing::info!(service_accounts = entries.len(), file = %name, "ServiceAccounts loaded; ready");
                Index::from_entries(entries, cfg.clone(), metrics.clone())
            }
            None => {
                let client = client.expect("a client exists without --service-accounts-file");
                let (index, watch) =
                    Index::watch(client, args.lookup_timeout, cfg.clone(), metrics.clone());
                tokio::spawn(watch);
                index
            }
        };
        let webhook_addr = SocketAddr::new(args.bind_address, args.port);
        let health_addr = SocketAddr::new(args.bind_address, args.metrics_port);
        let webhook_listener = server::bind(webhook_addr, "--port").await?;
        let health_listener = server::bind(health_addr, "--metrics-port").await?;
        tracing::info!(webhook = %webhook_addr, health = %health_addr, "listening");

        let shutdown = CancellationToken::new();
        let draining = Arc::new(AtomicBool::new(false));
        tokio::spawn(signals::shutdown_on_signal(
            shutdown.clone(),
            draining.clone(),
            args.shutdown_timeout,
        ));
        let webhook = Arc::new(Webhook::new(cfg, index.clone(), metrics.clone()));
        let admission = server::serve(
            webhook_listener,
            Some(tls),
            webhook_router(webhook),
            Limits::default(),
            shutdown.clone(),
            args.shutdown_timeout,
        );
        let health = server::serve(
            health_listener,
            None,
            health_router(
                move || {
                    if draining.load(Ordering::Acquire) {
                        Err("shutting down".into())
                    } else if !index.is_ready() {
                        Err("ServiceAccount index not synced yet".into())
                    } else {
                        Ok(())
                    }
                },
                move || metrics.encode(),
            ),
            Limits::default(),
            shutdown.clone(),
            Duration::from_secs(1),
        );
        tokio::join!(admission, health);
        tracing::info!("stopped");
        Ok(())
    })
}

/// Loads (creating or renewing) the self-managed certificate, publishes its CA, and keeps both
/// current in the background.
async fn self_managed_tls(
    args: &ServeArgs,
    client: kube::Client,
    metrics: &Metrics,
) -> Result<Arc<ReloadingConfig>> {
    let secret = args.cert_secret.as_deref().expect("checked by the caller");
    let namespace = args
        .cert_secret_namespace
        .as_deref()
        .expect("required by clap");
    let manager = CertSecret::new(
        client,
        namespace,
        secret,
        args.cert_dns.clone(),
        args.webhook_config.clone(),
    );
    let material = manager
        .ensure()
        .await
        .context("cannot load or create the self-managed certificate")?;
    if let Err(err) = manager.sync_ca_bundle(&material.ca_bundle()).await {
        tracing::error!(error = %err, "caBundle not updated; retrying in the background");
    }
    let (cert, key) = material.pem_sources();
    let tls = Arc::new(ReloadingConfig::from_pem(
        &cert,
        &key,
        count_reloads(&metrics.tls_reloads),
    )?);
    tokio::spawn(manager.maintain(tls.clone(), material, args.cert_check_interval));
    Ok(tls)
}
