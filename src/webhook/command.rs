//! The `serve` command: flags and wiring of the admission webhook.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::compat::{DEFAULT_TLS_CERT, DEFAULT_TLS_KEY, InClusterCertificate, ReferenceFlags};
use super::metrics::Metrics;
use super::server::{Webhook, webhook_router};
use super::serviceaccounts::Index;
use crate::certs::secret::CertSecret;
use crate::injection::flags::InjectionArgs;
use crate::injection::manifest;
use crate::serving::health::serve_health;
use crate::serving::metrics::count_reloads;
use crate::serving::server::Limits;
use crate::serving::shutdown::{Shutdown, ShutdownArgs};
use crate::serving::supervisor::Supervisor;
use crate::serving::tls::ReloadingConfig;
use crate::serving::{kube_client, server};

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
        required_unless_present_any = ["cert_secret", "in_cluster"],
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
    #[command(flatten)]
    shutdown: ShutdownArgs,
    #[command(flatten)]
    reference: ReferenceFlags,
}

/// Where the serving certificate comes from.
enum Certificate {
    Files(PathBuf, PathBuf),
    SelfManaged(InClusterCertificate, Option<String>),
}

impl ServeArgs {
    /// `--cert-secret`, else `--in-cluster=true` (the EKS webhook's form of it), else the files.
    fn certificate(&self) -> Result<Certificate> {
        if let Some(secret) = &self.cert_secret {
            let namespace = self
                .cert_secret_namespace
                .clone()
                .context("--cert-secret-namespace is required with --cert-secret")?;
            return Ok(Certificate::SelfManaged(
                InClusterCertificate {
                    secret: secret.clone(),
                    namespace,
                    dns: self.cert_dns.clone(),
                    webhook_config: String::new(),
                },
                self.webhook_config.clone(),
            ));
        }
        if let Some(cert) = self.reference.in_cluster_certificate() {
            let config = Some(cert.webhook_config.clone());
            return Ok(Certificate::SelfManaged(cert, config));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Certificate::Files(cert.clone(), key.clone())),
            _ if self.reference.default_tls_files() => Ok(Certificate::Files(
                DEFAULT_TLS_CERT.into(),
                DEFAULT_TLS_KEY.into(),
            )),
            _ => bail!("pass --tls-cert and --tls-key, or --cert-secret"),
        }
    }
}

/// Runs the admission webhook and its health endpoint until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    let cfg = Arc::new(args.injection.config()?);
    for note in args.reference.notes() {
        tracing::warn!("{note}");
    }
    let metrics = Arc::new(Metrics::default());
    let certificate = args.certificate()?;
    let runtime = server::runtime()?;
    runtime.block_on(async move {
        let shutdown = Shutdown::on_signal(&args.shutdown);
        let supervisor = Supervisor::new(shutdown.clone());
        let self_managed = matches!(certificate, Certificate::SelfManaged(..));
        let client = if args.service_accounts_file.is_none() || self_managed {
            Some(
                kube_client::connect(
                    args.kubeconfig.as_deref(),
                    args.reference.kube_api.as_deref(),
                    "pass --kubeconfig or --service-accounts-file",
                )
                .await?,
            )
        } else {
            None
        };
        if let Some(cluster) = &client {
            kube_client::log_support(&cluster.client);
        }
        let tls = match certificate {
            Certificate::Files(cert, key) => Arc::new(ReloadingConfig::load(
                &cert,
                &key,
                count_reloads(&metrics.tls_reloads),
            )?),
            Certificate::SelfManaged(cert, webhook_config) => {
                let cluster = client.clone().context("no Kubernetes client")?;
                self_managed_tls(cert, webhook_config, args.cert_check_interval, cluster.client, &metrics, &supervisor)
                    .await?
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
                let cluster = client.expect("a client exists without --service-accounts-file");
                let (index, watch) =
                    Index::watch(cluster, args.lookup_timeout, cfg.clone(), metrics.clone());
                supervisor.spawn("ServiceAccount watch", watch);
                index
            }
        };
        let webhook_addr = SocketAddr::new(args.bind_address, args.port);
        let health_addr = SocketAddr::new(args.bind_address, args.metrics_port);
        let webhook_listener = server::bind(webhook_addr, "--port").await?;
        let health_listener = server::bind(health_addr, "--metrics-port").await?;
        tracing::info!(webhook = %webhook_addr, health = %health_addr, "listening");

        let webhook = Arc::new(Webhook::new(cfg, index.clone(), metrics.clone()));
        let served = CancellationToken::new();
        let admission = async {
            server::serve(
                webhook_listener,
                Some(tls),
                webhook_router(webhook),
                Limits::default(),
                shutdown.clone(),
            )
            .await;
            served.cancel();
        };
        let draining = shutdown.draining.clone();
        let health = serve_health(
            health_listener,
            supervisor,
            move || {
                if draining.is_cancelled() {
                    Err("shutting down".into())
                } else {
                    index.readiness()
                }
            },
            move || metrics.encode(),
            served.clone(),
        );
        tokio::join!(admission, health);
        if shutdown.failed() {
            bail!("stopped after a background task failed (see the error above)");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Loads (creating or renewing) the self-managed certificate, publishes its CA, and keeps both
/// current in the background.
async fn self_managed_tls(
    cert: InClusterCertificate,
    webhook_config: Option<String>,
    check_interval: Duration,
    client: kube::Client,
    metrics: &Metrics,
    supervisor: &Supervisor,
) -> Result<Arc<ReloadingConfig>> {
    let manager = CertSecret::new(
        client,
        &cert.namespace,
        &cert.secret,
        cert.dns,
        webhook_config,
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
    supervisor.spawn(
        "certificate upkeep",
        manager.maintain(tls.clone(), material, check_interval),
    );
    Ok(tls)
}
