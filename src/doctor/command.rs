//! The `doctor` command: flags, and the checks run in the order STS meets them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use super::chain::{self, Subject};
use super::dry_run::{self, Expected, PROBE_LABEL};
use super::iam;
use super::report::{Check, Report, Status};
use super::webhook::{self, Target, Webhooks};
use super::workload::{self, Workload};
use crate::discovery::source::ApiServer;
use crate::injection::config::InjectionConfig;
use crate::injection::flags::AnnotationArgs;
use crate::serving::kube_client;
use crate::serving::probe::Roots;
use crate::serving::server::runtime;

/// How the report is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `doctor`: flags.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Kubeconfig to use instead of the in-cluster configuration (or $KUBECONFIG).
    #[arg(long, env = "IRSA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the ServiceAccount or pod.
    #[arg(
        short = 'n',
        long,
        env = "IRSA_DOCTOR_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    /// ServiceAccount to check (default: the pod's, else `default`).
    #[arg(long, env = "IRSA_DOCTOR_SERVICE_ACCOUNT", conflicts_with = "pod")]
    service_account: Option<String>,
    /// Pod to check: its mutation, environment and token file, and its ServiceAccount.
    #[arg(long, env = "IRSA_DOCTOR_POD")]
    pod: Option<String>,
    /// The issuer you configured elsewhere (discovery server, IAM), compared byte for byte.
    #[arg(long, env = "IRSA_ISSUER_URL")]
    issuer_url: Option<String>,
    /// Also check the AWS side (OIDC provider, client IDs, thumbprints, the role and its trust
    /// policy) with the standard AWS credential chain; read-only calls only.
    #[arg(long, env = "IRSA_DOCTOR_AWS")]
    aws: bool,
    /// Report format.
    #[arg(long, env = "IRSA_DOCTOR_OUTPUT", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// PEM CA certificates to trust for the public issuer besides the public roots (a private
    /// CA that IAM knows by thumbprint).
    #[arg(long, env = "IRSA_DOCTOR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The annotation prefix and default audience, as given to `serve`.
    #[command(flatten)]
    annotations: AnnotationArgs,
    /// The MutatingWebhookConfiguration to check (default: whichever intercepts the pod).
    #[arg(long, env = "IRSA_DOCTOR_WEBHOOK_CONFIG")]
    webhook_config: Option<String>,
    /// Longest wait for each request (API server, public issuer, AWS, webhook).
    #[arg(long, env = "IRSA_DOCTOR_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Check only that the webhook mutates pods of the ServiceAccount: the ServiceAccount, the
    /// webhook configuration (when readable) and a server-side dry-run create of a probe pod.
    /// Needs only `create` on pods and `get` on the ServiceAccount (the chart's `helm test`).
    #[arg(long, env = "IRSA_DOCTOR_WEBHOOK_ONLY", conflicts_with_all = ["pod", "aws", "issuer_url"])]
    webhook_only: bool,
    /// With --webhook-only: repeat the dry run for up to this long while the probe pod is not
    /// mutated (a webhook still starting right after `helm install`).
    #[arg(long, env = "IRSA_DOCTOR_RETRY_FOR", default_value = "0s", value_parser = humantime::parse_duration, requires = "webhook_only")]
    retry_for: Duration,
    /// With --webhook-only: the probe pod's image. It is never pulled (the pod is not stored),
    /// but admission policies may judge it.
    #[arg(
        long,
        env = "IRSA_DOCTOR_PROBE_IMAGE",
        default_value = "registry.k8s.io/pause:3.10",
        requires = "webhook_only"
    )]
    probe_image: String,
}

/// Runs every check that the flags allow, prints the report, fails when a check failed.
pub fn run(args: DoctorArgs) -> Result<()> {
    let extra = match &args.ca_file {
        None => Vec::new(),
        Some(path) => crate::serving::tls::read_ca_file(path, "--ca-file")?,
    };
    let roots = Roots {
        public: true,
        extra,
    };
    let report = runtime()?.block_on(checks(&args, &roots))?;
    let text = match args.output {
        Output::Text => report.text(),
        Output::Json => serde_json::to_string_pretty(&report).context("cannot write JSON")? + "\n",
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    match report.count(Status::Fail) {
        0 => Ok(()),
        n => bail!("{n} check(s) failed"),
    }
}

async fn checks(args: &DoctorArgs, roots: &Roots) -> Result<Report> {
    let cluster =
        kube_client::connect(args.kubeconfig.as_deref(), None, "pass --kubeconfig").await?;
    let client = &cluster.client;
    let cfg = InjectionConfig::new(args.annotations.settings())?;
    if args.webhook_only {
        return Ok(webhook_only(client, args, &cfg).await);
    }
    let keys = &cfg.keys;
    let mut report = Report::default();
    let limit = args.timeout;

    report.push(match kube_client::support(client, limit).await {
        Some(support @ kube_client::Support::Older(_)) => Check::warn(
            "cluster.version",
            support.describe(),
            "upgrade the cluster to a supported Kubernetes minor",
        ),
        Some(support) => Check::ok("cluster.version", support.describe()),
        None => Check::skip("cluster.version", "the API server did not say its version"),
    });
    let api = ApiServer::new(client.clone(), cluster.url.clone(), limit);
    let api_side = chain::api_server(&api, &mut report).await;
    let workload = workload::load(
        client,
        &args.namespace,
        args.service_account.as_deref(),
        args.pod.as_deref(),
        &cfg,
        &mut report,
    )
    .await;
    let minted = match &workload {
        Some(w) => {
            let subject = Subject {
                namespace: w.namespace.clone(),
                service_account: w.service_account.clone(),
                audience: w.audience.clone(),
            };
            chain::mint(client, &subject, api_side.as_ref(), &mut report).await
        }
        None => None,
    };
    let public = match &api_side {
        Some(api_side) => {
            chain::flag(api_side, args.issuer_url.as_deref(), &mut report);
            let public =
                chain::public(&api_side.issuer, &cluster.url, roots, limit, &mut report).await;
            match &public {
                Some(public) => chain::keys(api_side, public, minted.as_ref(), &mut report),
                None => chain::skip_rest(
                    &mut report,
                    &["keys.token", "keys.published"],
                    "no public JWKS to compare with (see public.discovery)",
                ),
            }
            public
        }
        None => None,
    };
    if let Some(w) = &workload {
        chain::characters(&w.audience, w.role_arn.as_deref(), &mut report);
        if let Some(minted) = &minted {
            chain::api_audience(client, minted, &w.audience, &mut report).await;
        }
    }
    match (&api_side, args.aws) {
        (Some(api_side), true) => {
            let aws = iam::connect(limit).await;
            let (audience, role) = workload
                .as_ref()
                .map_or((cfg.audience.as_str(), None), |w| (w.audience.as_str(), w.role_arn.as_deref()));
            iam::check(&aws, &api_side.issuer, audience, role, minted.as_ref(), public.as_ref(), &mut report).await;
        }
        (None, true) => report.push(Check::skip("role.trust", "the API server's issuer is unknown")),
        (_, false) => report.push(Check::skip(
            "role.trust",
            "no --aws: give it to check the IAM OIDC provider, client IDs and the role's trust policy",
        )),
    }
    let pod_labels = workload
        .as_ref()
        .and_then(|w| w.pod.as_ref()?.metadata.labels.clone());
    let webhooks = webhooks(client, args, pod_labels.as_ref(), &mut report).await;
    if let Some(w) = &workload {
        w.check_pod(client, keys, &webhooks, limit, &mut report)
            .await;
    }
    Ok(report)
}

/// `webhook.config`, `webhook.endpoints` and `webhook.certificate` for a pod with `pod_labels`
/// in the namespace.
async fn webhooks(
    client: &kube::Client,
    args: &DoctorArgs,
    pod_labels: Option<&BTreeMap<String, String>>,
    report: &mut Report,
) -> Webhooks {
    // Unreadable with a namespaced Role: the selectors are then judged without them.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace_labels = namespaces
        .get_opt(&args.namespace)
        .await
        .ok()
        .flatten()
        .map(|n| n.metadata.labels.unwrap_or_default());
    let target = Target {
        namespace: &args.namespace,
        namespace_labels: namespace_labels.as_ref(),
        pod_labels,
    };
    webhook::check(
        client,
        args.webhook_config.as_deref(),
        &target,
        args.timeout,
        report,
    )
    .await
}

/// `--webhook-only`: the ServiceAccount, the webhook (as far as this identity may read it) and
/// `webhook.dry-run`; nothing of the issuer, the public documents or AWS.
async fn webhook_only(client: &kube::Client, args: &DoctorArgs, cfg: &InjectionConfig) -> Report {
    const ID: &str = "webhook.dry-run";
    let mut report = Report::default();
    let loaded = workload::load(
        client,
        &args.namespace,
        args.service_account.as_deref(),
        None,
        cfg,
        &mut report,
    )
    .await;
    let Some(Workload {
        service_account,
        role_arn,
        audience,
        ..
    }) = loaded
    else {
        report.push(Check::skip(ID, "no ServiceAccount to create a pod of"));
        return report;
    };
    let Some(role_arn) = role_arn else {
        report.push(Check::skip(
            ID,
            format!(
                "ServiceAccount {service_account} has no role annotation: nothing would be injected"
            ),
        ));
        return report;
    };
    let expected = Expected {
        namespace: &args.namespace,
        service_account: &service_account,
        role_arn: &role_arn,
        audience: &audience,
    };
    // First, so that a webhook still starting has the retry window to become ready before the
    // configuration and endpoints are looked at.
    let probed = dry_run::probe(
        client,
        &expected,
        &args.probe_image,
        args.timeout,
        args.retry_for,
    )
    .await;
    let labels = BTreeMap::from([(PROBE_LABEL.to_owned(), "true".to_owned())]);
    let webhooks = webhooks(client, args, Some(&labels), &mut report).await;
    report.push(dry_run::verdict(&probed, &expected, &webhooks));
    report
}
