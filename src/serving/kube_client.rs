//! The Kubernetes client of every command that talks to an API server.

use std::path::Path;

use anyhow::{Context, Result};

use super::errors::chain;

/// A Kubernetes client and the URL of the API server it talks to, for messages.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub url: String,
}

/// The client from `kubeconfig`, or inferred (in-cluster, `$KUBECONFIG`, `~/.kube/config`), with
/// `api_url` instead of the configuration's server when given; `hint` says what to do when there
/// is no configuration.
pub async fn connect(
    kubeconfig: Option<&Path>,
    api_url: Option<&str>,
    hint: &str,
) -> Result<Cluster> {
    let mut config = match kubeconfig {
        Some(path) => {
            // Read here: kube's own error repeats the I/O error it wraps.
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| {
                anyhow::anyhow!("--kubeconfig {} is not a kubeconfig: {}", path.display(), chain(&e))
            })?;
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
    let url = config.cluster_url.to_string();
    tracing::info!(api_server = %url, "Kubernetes API server");
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot build a client for {url}: {}", chain(&e)))?;
    Ok(Cluster { client, url })
}
