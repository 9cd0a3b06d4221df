//! Command line: every flag also reads an `IRSA_*` environment variable.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::certs::secret::CertSecret;
use crate::discovery::export::Exporter;
use crate::discovery::metrics::DiscoveryMetrics;
use crate::discovery::refresh::Refresher;
use crate::discovery::source::ApiServer;
use crate::discovery::store::Store;
use crate::injection::config::{InjectionConfig, InjectionSettings};
use crate::injection::inject::Injector;
use crate::injection::manifest;
use crate::serving::tls::ReloadingConfig;
use crate::webhook::metrics::{Metrics, count_reloads};
use crate::webhook::server::{self, Webhook};
use crate::webhook::serviceaccounts::Index;
use crate::{certs, discovery};

/// IAM Roles for Service Accounts on any Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "irsa-webhook", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, env = "IRSA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `irsa_webhook=debug,kube=warn`.
    #[arg(long, env = "IRSA_LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mutating admission webhook (HTTPS) and its health/metrics endpoint.
    Serve(ServeArgs),
    /// Serve the API server's OIDC discovery document and JWKS at the public issuer URL.
    Discovery(DiscoveryArgs),
    /// Print YAML with pods and pod templates mutated as the webhook would.
    Inject(InjectArgs),
    /// Generate a CA and a serving certificate signed by it.
    Certs(CertsArgs),
}

/// Injection settings shared by `serve` and `inject`; names follow the reference webhook.
#[derive(Debug, Args)]
struct InjectionArgs {
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
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    sts_regional_endpoint: bool,
}

impl InjectionArgs {
    fn config(&self) -> Result<InjectionConfig> {
        Ok(InjectionConfig::new(InjectionSettings {
            annotation_prefix: &self.annotation_prefix,
            token_audience: &self.token_audience,
            token_expiration: self.token_expiration,
            token_mount_path: &self.token_mount_path,
            aws_default_region: self.aws_default_region.as_deref(),
            sts_regional_endpoint: self.sts_regional_endpoint,
        })?)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
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

#[derive(Debug, Args)]
struct DiscoveryArgs {
    /// Public issuer URL; must equal the API server's --service-account-issuer exactly.
    #[arg(long, env = "IRSA_ISSUER_URL")]
    issuer_url: String,
    /// Kubeconfig to use instead of the in-cluster configuration (or $KUBECONFIG).
    #[arg(long, env = "IRSA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// How often the documents are fetched from the API server.
    #[arg(long, env = "IRSA_REFRESH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    refresh_interval: Duration,
    /// How long the last good documents are served without a good fetch; then 503 and not ready.
    #[arg(long, env = "IRSA_MAX_STALE", default_value = "10m", value_parser = humantime::parse_duration)]
    max_stale: Duration,
    /// Longest wait for one answer of the API server.
    #[arg(long, env = "IRSA_FETCH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    fetch_timeout: Duration,
    /// Address both listeners bind to.
    #[arg(long, env = "IRSA_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the two public documents (HTTPS with --tls-cert, plain HTTP otherwise).
    #[arg(long, env = "IRSA_PORT", default_value_t = 8080)]
    port: u16,
    /// Plain-HTTP port of /livez, /readyz and /metrics (never expose it publicly).
    #[arg(long, env = "IRSA_METRICS_PORT", default_value_t = 8081)]
    metrics_port: u16,
    /// PEM certificate chain for HTTPS; re-read when it changes.
    #[arg(long, env = "IRSA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS; re-read when it changes.
    #[arg(long, env = "IRSA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also write .well-known/openid-configuration and openid/v1/jwks here when they change.
    #[arg(long, env = "IRSA_EXPORT_DIR")]
    export_dir: Option<PathBuf>,
    /// Longest wait for in-flight requests after SIGTERM.
    #[arg(long, env = "IRSA_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
}

#[derive(Debug, Args)]
struct InjectArgs {
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

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "IRSA_CERTS_OUT", default_value = "certs")]
    out: PathBuf,
    /// DNS name of the serving certificate; repeatable.
    #[arg(long, env = "IRSA_CERTS_DNS", value_delimiter = ',')]
    dns: Vec<String>,
    /// IP address of the serving certificate; repeatable.
    #[arg(long, env = "IRSA_CERTS_IP", value_delimiter = ',')]
    ip: Vec<IpAddr>,
    /// Validity of the serving certificate in days (the CA lives twice as long).
    #[arg(long, env = "IRSA_CERTS_DAYS", default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long, env = "IRSA_CERTS_FORCE")]
    force: bool,
}

impl Cli {
    /// Parses the command line and runs the command.
    pub fn parse_and_run() -> Result<()> {
        let cli = Cli::parse();
        init_logging(cli.log_format, &cli.log_level)?;
        match cli.command {
            Command::Serve(args) => serve(args),
            Command::Discovery(args) => run_discovery(args),
            Command::Inject(args) => inject(args),
            Command::Certs(args) => make_certs(args),
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("--log-level {filter:?} is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let client = match (&args.service_accounts_file, &args.cert_secret) {
            (Some(_), None) => None,
            _ => Some(
                kube_client(
                    args.kubeconfig.as_ref(),
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
        let webhook_listener = bind(webhook_addr, "--port").await?;
        let health_listener = bind(health_addr, "--metrics-port").await?;
        tracing::info!(webhook = %webhook_addr, health = %health_addr, "listening");

        let shutdown = CancellationToken::new();
        let draining = Arc::new(AtomicBool::new(false));
        tokio::spawn(signal_shutdown(shutdown.clone(), draining.clone()));
        let webhook = Arc::new(Webhook { cfg, index: index.clone(), metrics: metrics.clone() });
        let admission = server::serve(
            webhook_listener,
            Some(tls),
            server::webhook_router(webhook),
            shutdown.clone(),
            args.shutdown_timeout,
        );
        let health = server::serve(
            health_listener,
            None,
            server::health_router(
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
            shutdown.clone(),
            Duration::from_secs(1),
        );
        tokio::join!(admission, health);
        tracing::info!("stopped");
        Ok(())
    })
}

/// The client from `kubeconfig`, or inferred; `hint` says what to do when there is none.
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

async fn kube_client(kubeconfig: Option<&PathBuf>, hint: &str) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .with_context(|| format!("no Kubernetes configuration: not in a cluster, no $KUBECONFIG or ~/.kube/config; {hint}"))?,
    };
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}

fn run_discovery(args: DiscoveryArgs) -> Result<()> {
    let settings = discovery::Settings::new(
        &args.issuer_url,
        args.refresh_interval,
        args.max_stale,
        args.fetch_timeout,
    )?;
    let exporter = args.export_dir.as_deref().map(Exporter::new).transpose()?;
    let metrics = Arc::new(DiscoveryMetrics::default());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(ReloadingConfig::load(
            cert,
            key,
            count_reloads(&metrics.tls_reloads),
        )?)),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let client = kube_client(args.kubeconfig.as_ref(), "pass --kubeconfig").await?;
        let public_addr = SocketAddr::new(args.bind_address, args.port);
        let health_addr = SocketAddr::new(args.bind_address, args.metrics_port);
        let public_listener = bind(public_addr, "--port").await?;
        let health_listener = bind(health_addr, "--metrics-port").await?;
        tracing::info!(public = %public_addr, health = %health_addr, tls = tls.is_some(), issuer = settings.issuer.as_str(), "listening");

        let shutdown = CancellationToken::new();
        let draining = Arc::new(AtomicBool::new(false));
        tokio::spawn(signal_shutdown(shutdown.clone(), draining.clone()));
        let store = Arc::new(Store::new(settings.max_stale, draining));
        let refresher = Refresher {
            source: ApiServer::new(client, settings.fetch_timeout),
            issuer: settings.issuer.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            exporter,
            interval: settings.refresh_interval,
        };
        let refresh = tokio::spawn(refresher.run(shutdown.clone()));
        let public = server::serve(
            public_listener,
            tls,
            discovery::server::public_router(store.clone(), metrics.clone(), &settings),
            shutdown.clone(),
            args.shutdown_timeout,
        );
        let health = server::serve(
            health_listener,
            None,
            server::health_router(move || store.readiness(), move || metrics.encode()),
            shutdown.clone(),
            Duration::from_secs(1),
        );
        tokio::join!(public, health);
        let _ = refresh.await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

/// On SIGTERM or SIGINT: report not ready, then stop accepting and drain.
async fn signal_shutdown(shutdown: CancellationToken, draining: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    draining.store(true, Ordering::Release);
    shutdown.cancel();
}

fn inject(args: InjectArgs) -> Result<()> {
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

fn make_certs(args: CertsArgs) -> Result<()> {
    let bundle = certs::generate(&args.dns, &args.ip, args.days)?;
    for path in bundle.write(&args.out, args.force)? {
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bool_flag_accepts_bare_and_explicit_forms() {
        for (args, expected) in [
            (&["x", "inject", "-f", "a"][..], false),
            (&["x", "inject", "-f", "a", "--sts-regional-endpoint"], true),
            (
                &["x", "inject", "-f", "a", "--sts-regional-endpoint=false"],
                false,
            ),
        ] {
            let Command::Inject(inject) = Cli::try_parse_from(args).unwrap().command else {
                panic!()
            };
            assert_eq!(inject.injection.sts_regional_endpoint, expected);
        }
    }

    #[test]
    fn discovery_defaults_durations_and_tls_pair() {
        let parse = |args: &[&str]| {
            let all = [
                &["x", "discovery", "--issuer-url", "https://oidc.example"][..],
                args,
            ]
            .concat();
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(Command::Discovery(d)) => Ok(d),
                Ok(_) => panic!("not discovery"),
                Err(e) => Err(e.kind()),
            }
        };
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.refresh_interval, d.max_stale, d.fetch_timeout),
            (
                Duration::from_secs(60),
                Duration::from_secs(600),
                Duration::from_secs(10)
            )
        );
        assert_eq!((d.port, d.metrics_port), (8080, 8081));
        assert!(d.tls_cert.is_none() && d.export_dir.is_none());
        let d = parse(&["--refresh-interval", "1s", "--max-stale", "10m"]).unwrap();
        assert_eq!(d.refresh_interval, Duration::from_secs(1));
        assert_eq!(
            parse(&["--refresh-interval", "60"]).unwrap_err(),
            clap::error::ErrorKind::ValueValidation,
            "a unit is required"
        );
        assert_eq!(
            parse(&["--tls-cert", "c.pem"]).unwrap_err(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }
}
