//! The `discovery` command: flags and wiring of the discovery server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Settings;
use super::export::{Exporter, Target};
use super::leader::{self, Election, Role};
use super::metrics::DiscoveryMetrics;
use super::public_check::PublicCheck;
use super::refresh::Refresher;
use super::s3::{S3Exporter, S3Location};
use super::server::public_router;
use super::source::{ApiServer, Source};
use super::store::Store;
use crate::serving::health::serve_health;
use crate::serving::metrics::count_reloads;
use crate::serving::probe::Roots;
use crate::serving::server::Limits;
use crate::serving::shutdown::{Shutdown, ShutdownArgs};
use crate::serving::supervisor::Supervisor;
use crate::serving::tls::ReloadingConfig;
use crate::serving::{aws, kube_client, server};

/// `discovery`: flags.
#[derive(Debug, Args)]
pub struct DiscoveryArgs {
    /// Public issuer URL; must equal the API server's --service-account-issuer exactly.
    #[arg(long, env = "IRSA_ISSUER_URL")]
    issuer_url: String,
    /// Kubeconfig to use instead of the in-cluster configuration (or $KUBECONFIG).
    #[arg(long, env = "IRSA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Publish the keys of these files (the API server's --service-account-key-file: PEM public
    /// or private keys, RSA or ECDSA, certificates) instead of fetching from the API server;
    /// repeatable or comma-separated, re-read at every refresh. Private parts are never published.
    #[arg(long = "key-file", env = "IRSA_KEY_FILES", value_delimiter = ',')]
    key_files: Vec<PathBuf>,
    /// Fetch (or read), validate and export once, then exit: 0 when every export succeeded,
    /// non-zero with the reason otherwise. Serves nothing.
    #[arg(long, env = "IRSA_ONCE", conflicts_with = "leader_elect")]
    once: bool,
    /// Be active only while holding a Lease: one replica publishes (exports, --leader-file),
    /// the others stand by and take over within --lease-duration.
    #[arg(long, env = "IRSA_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "IRSA_LEASE_NAME",
        default_value = "irsa-webhook-discovery"
    )]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's own, else `default`).
    #[arg(long, env = "IRSA_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a Lease lasts without renewal before a standby takes over.
    #[arg(long, env = "IRSA_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the Lease (default: $HOSTNAME and the process id).
    #[arg(long, env = "IRSA_LEADER_IDENTITY")]
    leader_identity: Option<String>,
    /// A file that exists exactly while this replica leads, for a sidecar (the Tailscale node)
    /// to wait on.
    #[arg(long, env = "IRSA_LEADER_FILE", requires = "leader_elect")]
    leader_file: Option<PathBuf>,
    /// How often the documents are fetched from the API server (or the key files re-read).
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
    /// Also upload both documents to s3://BUCKET[/PREFIX] when they change (standard AWS
    /// credentials; AWS_ENDPOINT_URL_S3 for S3-compatible stores); repeatable.
    #[arg(long = "export-s3", env = "IRSA_EXPORT_S3", value_delimiter = ',', value_parser = S3Location::parse)]
    export_s3: Vec<S3Location>,
    /// Address the bucket in the path rather than the host name (S3-compatible stores).
    #[arg(long, env = "IRSA_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// Fetch our documents from the public issuer URL this often and report any difference
    /// (another issuer, stale keys, unreachable, slower than 1 s); off when unset.
    #[arg(long, env = "IRSA_PUBLIC_CHECK_INTERVAL", value_parser = humantime::parse_duration)]
    public_check_interval: Option<Duration>,
    /// A public-check difference makes the server not ready (by default it is a note on /readyz).
    #[arg(
        long,
        env = "IRSA_PUBLIC_CHECK_REQUIRED",
        requires = "public_check_interval"
    )]
    public_check_required: bool,
    /// PEM CA certificates the public check trusts besides the public roots.
    #[arg(
        long,
        env = "IRSA_PUBLIC_CHECK_CA_FILE",
        requires = "public_check_interval"
    )]
    public_check_ca_file: Option<PathBuf>,
    #[command(flatten)]
    shutdown: ShutdownArgs,
}

/// Runs the discovery server and its health endpoint until SIGTERM or SIGINT, or with
/// `--once` publishes once and exits.
pub fn run(args: DiscoveryArgs) -> Result<()> {
    let settings = Settings::new(
        &args.issuer_url,
        args.refresh_interval,
        args.max_stale,
        args.fetch_timeout,
    )?;
    let dir = args.export_dir.as_deref().map(Exporter::new).transpose()?;
    let metrics = Arc::new(DiscoveryMetrics::default());
    let tls = match (&args.tls_cert, &args.tls_key, args.once) {
        (Some(cert), Some(key), false) => Some(Arc::new(ReloadingConfig::load(
            cert,
            key,
            count_reloads(&metrics.tls_reloads),
        )?)),
        _ => None,
    };
    let check_roots = match &args.public_check_ca_file {
        None => Vec::new(),
        Some(path) => crate::serving::tls::read_ca_file(path, "--public-check-ca-file")?,
    };
    let runtime = server::runtime()?;
    runtime.block_on(async move {
        let cluster = if args.key_files.is_empty() || args.leader_elect {
            Some(kube_client::connect(args.kubeconfig.as_deref(), None, "pass --kubeconfig or --key-file").await?)
        } else {
            None
        };
        if let Some(cluster) = &cluster {
            kube_client::log_support(&cluster.client);
        }
        let source = match (&cluster, args.key_files.is_empty()) {
            (Some(cluster), true) => Source::ApiServer(ApiServer::new(
                cluster.client.clone(),
                cluster.url.clone(),
                settings.fetch_timeout,
            )),
            _ => Source::KeyFiles(args.key_files.clone()),
        };
        let mut targets: Vec<Target> = dir.into_iter().map(Target::Dir).collect();
        if !args.export_s3.is_empty() {
            let client = aws::Client::new(settings.fetch_timeout).await;
            for location in &args.export_s3 {
                let exporter = S3Exporter::new(
                    client.clone(),
                    location.clone(),
                    args.s3_path_style,
                    settings.refresh_interval,
                )
                .with_context(|| format!("--export-s3 {location}"))?;
                targets.push(Target::S3(exporter));
            }
        }
        let shutdown = Shutdown::on_signal(&args.shutdown);
        let supervisor = Supervisor::new(shutdown.clone());
        let store = Arc::new(Store::new(settings.max_stale, shutdown.draining.clone()));
        let leader = match (&cluster, args.leader_elect) {
            (Some(cluster), true) => Some(campaign(&args, cluster.client.clone(), store.clone(), &supervisor, &shutdown)),
            _ => None,
        };
        let refresher = Refresher {
            source,
            issuer: settings.issuer.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            targets,
            interval: settings.refresh_interval,
            leader,
        };
        if args.once {
            return once(&refresher).await;
        }
        let public_addr = SocketAddr::new(args.bind_address, args.port);
        let health_addr = SocketAddr::new(args.bind_address, args.metrics_port);
        let public_listener = server::bind(public_addr, "--port").await?;
        let health_listener = server::bind(health_addr, "--metrics-port").await?;
        tracing::info!(public = %public_addr, health = %health_addr, tls = tls.is_some(), issuer = settings.issuer.as_str(), "listening");

        supervisor.spawn("discovery refresh", refresher.run(shutdown.draining.clone()));
        if let Some(interval) = args.public_check_interval {
            let check = PublicCheck {
                issuer: settings.issuer.clone(),
                roots: Roots { public: true, extra: check_roots },
                interval,
                required: args.public_check_required,
                store: store.clone(),
                metrics: metrics.clone(),
            };
            supervisor.spawn("public check", check.run(shutdown.draining.clone()));
        }
        let served = CancellationToken::new();
        let router = public_router(store.clone(), metrics.clone(), &settings);
        let public = async {
            server::serve(public_listener, tls, router, Limits::default(), shutdown.clone()).await;
            served.cancel();
        };
        let health = serve_health(
            health_listener,
            supervisor.clone(),
            move || store.readiness(),
            move || metrics.encode(),
            served.clone(),
        );
        tokio::join!(public, health);
        // The election releases the Lease it holds, so a standby takes over at once.
        let _ = tokio::time::timeout(args.shutdown.shutdown_timeout, supervisor.finished()).await;
        if shutdown.failed() {
            bail!("stopped after a background task failed (see the error above)");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Starts the leader election and keeps `/readyz` saying which part this replica plays;
/// returns the role. The campaign ends (releasing the Lease) when the shutdown begins.
fn campaign(
    args: &DiscoveryArgs,
    client: kube::Client,
    store: Arc<Store>,
    supervisor: &Supervisor,
    shutdown: &Shutdown,
) -> tokio::sync::watch::Receiver<Role> {
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(leader::default_namespace);
    let lease = format!("{namespace}/{}", args.lease_name);
    let election = Election {
        leases: kube::Api::namespaced(client, &namespace),
        name: args.lease_name.clone(),
        identity: args
            .leader_identity
            .clone()
            .unwrap_or_else(leader::default_identity),
        duration: args.lease_duration,
        leader_file: args.leader_file.clone(),
    };
    let (sender, receiver) = tokio::sync::watch::channel(Role::Unknown);
    store.report(
        "leader election",
        leader::note(&Role::Unknown, &lease).map(|n| (n, false)),
    );
    supervisor.spawn(
        "leader election",
        election.run(sender, shutdown.draining.clone()),
    );
    let mut follow = receiver.clone();
    // Ends with the election, which owns the sender.
    supervisor.spawn("leader role report", async move {
        while follow.changed().await.is_ok() {
            let role = follow.borrow_and_update().clone();
            store.report(
                "leader election",
                leader::note(&role, &lease).map(|n| (n, false)),
            );
        }
    });
    receiver
}

/// `--once`: one fetch and every export, or an error naming what failed; nothing is exported
/// from a failed fetch.
async fn once(refresher: &Refresher) -> Result<()> {
    let docs = refresher
        .fetch()
        .await
        .map_err(|e| anyhow::anyhow!("nothing published: {e}"))?;
    let mut exported = vec![None; refresher.targets.len()];
    let failures = refresher.export(&docs, &mut exported).await;
    if !failures.is_empty() {
        bail!(
            "{} export(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    tracing::info!(
        keys = docs.keys,
        targets = refresher.targets.len(),
        issuer = refresher.issuer.as_str(),
        "published once"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        discovery: DiscoveryArgs,
    }

    #[test]
    fn discovery_defaults_durations_and_tls_pair() {
        let parse = |args: &[&str]| {
            let all = [&["x", "--issuer-url", "https://oidc.example"][..], args].concat();
            Cmd::try_parse_from(all)
                .map(|c| c.discovery)
                .map_err(|e| e.kind())
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
