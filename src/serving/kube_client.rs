//! The Kubernetes client of every command that talks to an API server.

use std::path::Path;

use anyhow::{Context, Result};

/// The client from `kubeconfig`, or inferred (in-cluster, `$KUBECONFIG`, `~/.kube/config`), with
/// `api_url` instead of the configuration's server when given; `hint` says what to do when there
/// is no configuration.
pub async fn connect(
    kubeconfig: Option<&Path>,
    api_url: Option<&str>,
    hint: &str,
) -> Result<kube::Client> {
    let mut config = match kubeconfig {
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
    if let Some(url) = api_url {
        config.cluster_url = url
            .parse()
            .with_context(|| format!("--kube-api {url:?} is not a URL"))?;
    }
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}
