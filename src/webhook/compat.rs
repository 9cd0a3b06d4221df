//! The command line of the EKS pod identity webhook (`amazon-eks-pod-identity-webhook`),
//! accepted by `serve` so that its manifests run unchanged. Flags with a meaning here are mapped
//! onto ours; the others are accepted and named in a start-up log line as having no effect.
//! Run as `webhook` (the reference image's entrypoint), the binary takes the reference's
//! defaults too: `serve` on port 443, in-cluster certificates.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::injection::config::go_bool_flag;

/// The reference's certificate files when `--in-cluster=false`.
pub const DEFAULT_TLS_CERT: &str = "/etc/webhook/certs/tls.crt";
pub const DEFAULT_TLS_KEY: &str = "/etc/webhook/certs/tls.key";

/// The flags of the EKS pod identity webhook that `serve` does not have under the same name.
#[derive(Debug, Default, Args)]
#[command(
    next_help_heading = "Flags of the EKS pod identity webhook, accepted so its manifests run unchanged"
)]
pub struct ReferenceFlags {
    /// true: keep the serving certificate in the Secret --tls-secret of --namespace, for
    /// <service-name>.<namespace>.svc (our self-managed certificate); false: read --tls-cert and
    /// --tls-key, by default /etc/webhook/certs/tls.{crt,key}.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool_flag, value_name = "BOOL")]
    pub in_cluster: Option<bool>,
    /// With --in-cluster: the namespace of the certificate Secret [default: eks].
    #[arg(long)]
    pub namespace: Option<String>,
    /// With --in-cluster: the Service in front of the webhook, and the name of its
    /// MutatingWebhookConfiguration whose caBundle is kept [default: pod-identity-webhook].
    #[arg(long)]
    pub service_name: Option<String>,
    /// With --in-cluster: the certificate Secret [default: pod-identity-webhook].
    #[arg(long)]
    pub tls_secret: Option<String>,
    /// The API server's URL, instead of the kubeconfig's.
    #[arg(long, value_name = "URL")]
    pub kube_api: Option<String>,
    /// No effect: TLS 1.2 and 1.3 are served, never older versions.
    #[arg(long, value_name = "VERSION")]
    pub tls_min_version: Option<String>,
    /// No effect: rustls offers only modern AEAD cipher suites.
    #[arg(long, value_name = "SUITES")]
    pub tls_cipher_suites: Option<String>,
    /// No effect: a ServiceAccount missing from the index is fetched from the API server within
    /// --lookup-timeout instead.
    #[arg(long, value_name = "DURATION")]
    pub service_account_lookup_grace_period: Option<String>,
    /// No effect: the ServiceAccount watch resumes and relists by itself.
    #[arg(long, value_name = "DURATION")]
    pub resync_period: Option<String>,
    /// No effect: logs always go to standard error.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool_flag, value_name = "BOOL")]
    pub logtostderr: Option<bool>,
    /// No effect: logs always go to standard error.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool_flag, value_name = "BOOL")]
    pub alsologtostderr: Option<bool>,
    /// No effect: klog verbosity; use --log-level (e.g. debug).
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,
    /// Not supported: ServiceAccounts are configured by their annotations only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool_flag, value_name = "BOOL")]
    pub watch_config_map: Option<bool>,
    /// No effect: there are no debugging handlers.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool_flag, value_name = "BOOL")]
    pub enable_debugging_handlers: Option<bool>,
    /// Not supported: EKS Pod Identity (container credentials) exists only on EKS.
    #[arg(long, value_name = "FILE")]
    pub watch_container_credentials_config: Option<PathBuf>,
    /// No effect (EKS Pod Identity).
    #[arg(long, value_name = "AUDIENCE")]
    pub container_credentials_audience: Option<String>,
    /// No effect (EKS Pod Identity).
    #[arg(long, value_name = "PATH")]
    pub container_credentials_token_mount_path: Option<String>,
    /// No effect (EKS Pod Identity).
    #[arg(long, value_name = "NAME")]
    pub container_credentials_token_volume_name: Option<String>,
    /// No effect (EKS Pod Identity).
    #[arg(long, value_name = "PATH")]
    pub container_credentials_token_path: Option<String>,
    /// No effect (EKS Pod Identity).
    #[arg(long, value_name = "URI")]
    pub container_credentials_full_uri: Option<String>,
}

/// The self-managed certificate that `--in-cluster=true` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InClusterCertificate {
    pub secret: String,
    pub namespace: String,
    pub dns: Vec<String>,
    pub webhook_config: String,
}

impl ReferenceFlags {
    /// The certificate Secret when `--in-cluster` is true, with the reference's defaults.
    pub fn in_cluster_certificate(&self) -> Option<InClusterCertificate> {
        if self.in_cluster != Some(true) {
            return None;
        }
        let namespace = self.namespace.clone().unwrap_or_else(|| "eks".into());
        let service = self
            .service_name
            .clone()
            .unwrap_or_else(|| "pod-identity-webhook".into());
        Some(InClusterCertificate {
            secret: self
                .tls_secret
                .clone()
                .unwrap_or_else(|| "pod-identity-webhook".into()),
            dns: vec![
                service.clone(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ],
            webhook_config: service,
            namespace,
        })
    }

    /// Whether `--in-cluster=false` asks for the reference's certificate files.
    pub fn default_tls_files(&self) -> bool {
        self.in_cluster == Some(false)
    }

    /// One line for each flag given that changes nothing here, and why.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |given: bool, flag: &str, why: &str| {
            if given {
                notes.push(format!(
                    "{flag} (EKS webhook flag) has no effect here: {why}"
                ));
            }
        };
        note(
            self.tls_min_version.is_some(),
            "--tls-min-version",
            "TLS 1.2 and 1.3 are served, never older versions",
        );
        note(
            self.tls_cipher_suites.is_some(),
            "--tls-cipher-suites",
            "only modern AEAD suites are offered",
        );
        note(
            self.service_account_lookup_grace_period.is_some(),
            "--service-account-lookup-grace-period",
            "a ServiceAccount missing from the index is fetched from the API server (--lookup-timeout)",
        );
        note(
            self.resync_period.is_some(),
            "--resync-period",
            "the ServiceAccount watch resumes and relists by itself",
        );
        note(
            self.logtostderr.is_some() || self.alsologtostderr.is_some(),
            "--logtostderr/--alsologtostderr",
            "logs always go to standard error",
        );
        note(
            self.verbosity.is_some(),
            "-v",
            "use --log-level (info, debug, trace)",
        );
        note(
            self.watch_config_map == Some(true),
            "--watch-config-map",
            "NOT SUPPORTED: ServiceAccounts listed in the pod-identity-webhook ConfigMap are not injected; annotate them",
        );
        note(
            self.enable_debugging_handlers.is_some(),
            "--enable-debugging-handlers",
            "there are no debugging handlers",
        );
        note(
            self.watch_container_credentials_config.is_some()
                || self.container_credentials_audience.is_some()
                || self.container_credentials_token_mount_path.is_some()
                || self.container_credentials_token_volume_name.is_some()
                || self.container_credentials_token_path.is_some()
                || self.container_credentials_full_uri.is_some(),
            "--watch-container-credentials-config/--container-credentials-*",
            "EKS Pod Identity exists only on EKS",
        );
        notes
    }
}

/// The command line to parse: as given, or, when the binary runs as `webhook` (the reference
/// image's entrypoint), `serve` with the reference's defaults before the arguments given
/// (port 443, in-cluster certificates), each only when the arguments do not set it.
pub fn argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_os_string());
    if invoked_as.as_deref() != Some("webhook".as_ref()) {
        return args;
    }
    let given = |flag: &str| {
        args.iter().skip(1).any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    let mut defaults: Vec<OsString> = vec!["serve".into()];
    for (flag, value) in [
        ("--port", "443"),
        ("--in-cluster", "true"),
        ("--tls-cert", DEFAULT_TLS_CERT),
        ("--tls-key", DEFAULT_TLS_KEY),
    ] {
        let implied_by_secret = flag.starts_with("--tls-") && !given("--in-cluster=false");
        if !given(flag) && !implied_by_secret {
            defaults.push(format!("{flag}={value}").into());
        }
    }
    args.splice(1..1, defaults);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv_of(args: &[&str]) -> Vec<String> {
        argv(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn run_as_webhook_it_takes_the_reference_defaults_unless_given() {
        assert_eq!(
            argv_of(&["/webhook", "--namespace=eks"]),
            [
                "/webhook",
                "serve",
                "--port=443",
                "--in-cluster=true",
                "--namespace=eks"
            ]
        );
        assert_eq!(
            argv_of(&["/webhook", "--in-cluster=false", "--port", "8443"]),
            [
                "/webhook",
                "serve",
                "--tls-cert=/etc/webhook/certs/tls.crt",
                "--tls-key=/etc/webhook/certs/tls.key",
                "--in-cluster=false",
                "--port",
                "8443"
            ]
        );
        assert_eq!(
            argv_of(&["/usr/bin/irsa-webhook", "serve"]),
            ["/usr/bin/irsa-webhook", "serve"]
        );
    }

    #[test]
    fn in_cluster_maps_onto_the_self_managed_secret() {
        let flags = ReferenceFlags {
            in_cluster: Some(true),
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert_eq!(
            flags.in_cluster_certificate(),
            Some(InClusterCertificate {
                secret: "pod-identity-webhook".into(),
                namespace: "default".into(),
                dns: vec![
                    "pod-identity-webhook".into(),
                    "pod-identity-webhook.default".into(),
                    "pod-identity-webhook.default.svc".into(),
                    "pod-identity-webhook.default.svc.cluster.local".into(),
                ],
                webhook_config: "pod-identity-webhook".into(),
            })
        );
        let off = ReferenceFlags {
            in_cluster: Some(false),
            ..Default::default()
        };
        assert_eq!(off.in_cluster_certificate(), None);
        assert!(off.default_tls_files());
        assert!(!ReferenceFlags::default().default_tls_files());
    }

    #[test]
    fn flags_without_effect_are_named() {
        let flags = ReferenceFlags {
            logtostderr: Some(true),
            verbosity: Some(4),
            watch_config_map: Some(true),
            ..Default::default()
        };
        let notes = flags.notes();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "--logtostderr/--alsologtostderr (EKS webhook flag) has no effect here"
            )
        );
        assert!(notes[2].contains("NOT SUPPORTED"));
        assert!(ReferenceFlags::default().notes().is_empty());
    }
}
