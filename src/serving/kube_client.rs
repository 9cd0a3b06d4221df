//! The Kubernetes client of every command that talks to an API server.

use std::path::Path;

use anyhow::{Context, Result};

/// The client from `kubeconfig`, or inferred (in-cluster, `$KUBECONFIG`, `~/.kube/config`);
/// `hint` says what to do when there is none.
pub async fn connect(kubeconfig: Option<&Path>, hint: &str) -> Result<kube::Client> {
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
