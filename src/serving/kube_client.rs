//! The Kubernetes client of every command that talks to an API server.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

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

/// The Kubernetes minors every release is tested on (README "Supported Kubernetes versions").
pub const TESTED_MINORS: RangeInclusive<u32> = 35..=37;

/// How the API server's version compares with [`TESTED_MINORS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Tested(String),
    /// Older than the oldest tested minor: expected to work, not tested.
    Older(String),
    /// Newer than the newest tested minor.
    Newer(String),
}

impl Support {
    /// Judges `git_version` (`v1.37.2`) and `minor` (`37`, `37+` on some distributions). Pure.
    pub fn of(git_version: &str, major: &str, minor: &str) -> Option<Self> {
        let minor: u32 = minor.trim_end_matches('+').parse().ok()?;
        let version = git_version.to_owned();
        Some(match (major, minor) {
            ("1", m) if m < *TESTED_MINORS.start() => Self::Older(version),
            ("1", m) if m > *TESTED_MINORS.end() => Self::Newer(version),
            ("1", _) => Self::Tested(version),
            _ => return None,
        })
    }

    /// A sentence for logs and `doctor`.
    pub fn describe(&self) -> String {
        let (oldest, newest) = (TESTED_MINORS.start(), TESTED_MINORS.end());
        match self {
            Self::Tested(v) => format!(
                "Kubernetes {v}, a version this release is tested on (1.{oldest} to 1.{newest})"
            ),
            Self::Older(v) => format!(
                "Kubernetes {v} is older than the oldest version this release is tested on (1.{oldest}) and out of upstream support; the webhook needs only the admission v1 API and metadata watches, so it should work, but upgrade the cluster"
            ),
            Self::Newer(v) => format!(
                "Kubernetes {v} is newer than the newest version this release is tested on (1.{newest})"
            ),
        }
    }
}

/// Asks the API server its version (within `limit`) and says how it compares with what is
/// tested; `None` when it does not answer.
pub async fn support(client: &kube::Client, limit: Duration) -> Option<Support> {
    let info = tokio::time::timeout(limit, client.apiserver_version())
        .await
        .ok()?
        .ok()?;
    Support::of(&info.git_version, &info.major, &info.minor)
}

/// Logs, in the background, how the API server's version compares with what is tested: a
/// warning when it is not. Short-lived (one request, bounded): a start-up note, not a dependency.
pub fn log_support(client: &kube::Client) {
    let client = client.clone();
    tokio::spawn(async move {
        match support(&client, Duration::from_secs(5)).await {
            Some(support @ Support::Tested(_)) => tracing::info!("{}", support.describe()),
            Some(support) => tracing::warn!("{}", support.describe()),
            None => tracing::debug!("the API server's version is unknown"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_judged_against_the_tested_minors() {
        assert_eq!(
            Support::of("v1.37.2", "1", "37"),
            Some(Support::Tested("v1.37.2".into()))
        );
        assert_eq!(
            Support::of("v1.35.0-eks-1", "1", "35+"),
            Some(Support::Tested("v1.35.0-eks-1".into()))
        );
        let old = Support::of("v1.30.4+k3s1", "1", "30").unwrap();
        assert_eq!(old, Support::Older("v1.30.4+k3s1".into()));
        assert!(
            old.describe()
                .contains("older than the oldest version this release is tested on (1.35)"),
            "{}",
            old.describe()
        );
        assert_eq!(
            Support::of("v1.38.0", "1", "38"),
            Some(Support::Newer("v1.38.0".into()))
        );
        assert_eq!(Support::of("v2.0.0", "2", "0"), None);
        assert_eq!(Support::of("v1.x", "1", "x"), None);
    }
}
