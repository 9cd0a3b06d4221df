//! The refresh loop: fetch, validate, publish or keep the last good copy, back off on failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::document::{self, DISCOVERY_PATH, DocumentError, Documents, IssuerUrl, JWKS_PATH};
use super::export::Target;
use super::keyfiles::{self, KeyFileError};
use super::leader::Role;
use super::metrics::DiscoveryMetrics;
use super::source::{FetchError, Source};
use super::store::Store;
use crate::serving::metrics::ResultLabels;

/// First retry delay after a failure; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why a refresh published nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Document(#[from] DocumentError),
}

impl RefreshError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason(),
            Self::KeyFile(_) => "key_file",
            Self::Document(e) => e.reason(),
        }
    }
}

/// Everything the loop needs.
pub struct Refresher {
    pub source: Source,
    pub issuer: IssuerUrl,
    pub store: Arc<Store>,
    pub metrics: Arc<DiscoveryMetrics>,
    pub targets: Vec<Target>,
    pub interval: Duration,
    /// With `--leader-elect`: only the leader exports.
    pub leader: Option<watch::Receiver<Role>>,
}

impl Refresher {
    /// Refreshes every `interval` (sooner, backing off, after a failure) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // What each target last took, so a failed write is retried next time.
        let mut exported: Vec<Option<Documents>> = vec![None; self.targets.len()];
        loop {
            let delay = match self.refresh().await {
                Some(_) if !self.exporting() => {
                    // A standby: whatever it exported before may be stale by the time it leads.
                    exported.iter_mut().for_each(|e| *e = None);
                    failures = 0;
                    self.interval
                }
                Some(docs) if self.export(&docs, &mut exported).await.is_empty() => {
                    failures = 0;
                    self.interval
                }
                // Published, but an export failed: retried sooner, backing off.
                Some(_) => {
                    failures = failures.saturating_add(1);
                    backoff(failures, self.interval)
                }
                None => {
                    failures = failures.saturating_add(1);
                    backoff(failures, self.interval)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One fetch of both documents; logs and counts the outcome, returns what was published.
    async fn refresh(&self) -> Option<Documents> {
        match self.fetch().await {
            Ok(docs) => {
                if self.store.publish(&docs) {
                    tracing::info!(
                        keys = docs.keys,
                        issuer = self.issuer.as_str(),
                        "published new discovery documents"
                    );
                } else {
                    tracing::debug!("discovery documents unchanged");
                }
                self.metrics.fetch("ok");
                self.metrics.keys.set(docs.keys as i64);
                self.metrics.last_success.set(unix_now());
                Some(docs)
            }
            Err(err) => {
                let reason = err.reason();
                let mismatch = matches!(&err, RefreshError::Document(e) if e.is_issuer_mismatch());
                match &err {
                    RefreshError::Fetch(_) | RefreshError::KeyFile(_) => {
                        tracing::warn!(reason, error = %err, "cannot fetch from the API server; keeping the last good documents");
                    }
                    RefreshError::Document(_) => {
                        tracing::error!(reason, error = %err, "API server answer refused; keeping the last good documents");
                    }
                }
                self.metrics.fetch(reason);
                self.store.fail(err.to_string(), mismatch);
                None
            }
        }
    }

    /// Whether this replica exports: always, or only while leading.
    fn exporting(&self) -> bool {
        self.leader
            .as_ref()
            .is_none_or(|role| *role.borrow() == Role::Leader)
    }

    /// Fetches (or reads) and validates both documents.
    pub async fn fetch(&self) -> Result<Documents, RefreshError> {
        match &self.source {
            Source::ApiServer(api) => {
                let (discovery, jwks) =
                    tokio::join!(api.fetch(DISCOVERY_PATH), api.fetch(JWKS_PATH));
                Ok(document::validate(&self.issuer, &discovery?, &jwks?)?)
            }
            Source::KeyFiles(paths) => {
                let paths = paths.clone();
                let jwks = tokio::task::spawn_blocking(move || keyfiles::read(&paths))
                    .await
                    .expect("reading key files does not panic")?;
                let keys = document::public_keys(&jwks)?;
                Ok(document::render(&self.issuer, &keys))
            }
        }
    }

    /// Writes `docs` to every target that does not have them yet; returns the failures.
    pub async fn export(
        &self,
        docs: &Documents,
        exported: &mut [Option<Documents>],
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for (target, done) in self.targets.iter().zip(exported.iter_mut()) {
            if done.as_ref() == Some(docs) {
                continue;
            }
            let name = target.name();
            let label = match target.write(docs).await {
                Ok(changed) => {
                    *done = Some(docs.clone());
                    self.store.report(&name, None);
                    if changed {
                        tracing::info!(target = %name, "exported the discovery documents");
                        "ok"
                    } else {
                        tracing::info!(target = %name, "the exported documents are already current");
                        "unchanged"
                    }
                }
                Err(err) => {
                    tracing::error!(target = %name, error = %err, "cannot export the discovery documents; the copy already there stays, retrying at the next refresh");
                    self.store.report(&name, Some((err.clone(), false)));
                    failures.push(format!("{name}: {err}"));
                    "error"
                }
            };
            self.metrics
                .exports
                .get_or_create(&ResultLabels { result: label })
                .inc();
        }
        failures
    }
}

/// Delay before retry number `failures` (1-based): doubling from [`FIRST_BACKOFF`], never longer
/// than the refresh interval, so a recovered API server is seen within one interval.
fn backoff(failures: u32, interval: Duration) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(interval)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let minute = Duration::from_secs(60);
        let delays: Vec<_> = (1..=9).map(|n| backoff(n, minute).as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        assert_eq!(backoff(u32::MAX, minute), minute);
        assert_eq!(
            backoff(1, Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }
}
