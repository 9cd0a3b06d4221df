//! The refresh loop: fetch, validate, publish or keep the last good copy, back off on failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::document::{self, DISCOVERY_PATH, DocumentError, Documents, IssuerUrl, JWKS_PATH};
use super::export::Exporter;
use super::metrics::DiscoveryMetrics;
use super::source::{ApiServer, FetchError};
use super::store::Store;
use crate::serving::metrics::ResultLabels;

/// First retry delay after a failure; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why a refresh published nothing.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// Everything the loop needs.
pub struct Refresher {
    pub source: ApiServer,
    pub issuer: IssuerUrl,
    pub store: Arc<Store>,
    pub metrics: Arc<DiscoveryMetrics>,
    pub exporter: Option<Exporter>,
    pub interval: Duration,
}

impl Refresher {
    /// Refreshes every `interval` (sooner, backing off, after a failure) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // The documents last written to --export-dir, so a failed write is retried next time.
        let mut exported: Option<Documents> = None;
        loop {
            let delay = match self.refresh().await {
                Some(docs) => {
                    failures = 0;
                    self.export(docs, &mut exported).await;
                    self.interval
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
                let (reason, mismatch) = match &err {
                    RefreshError::Fetch(e) => (e.reason(), false),
                    RefreshError::Document(e) => (e.reason(), e.is_issuer_mismatch()),
                };
                match &err {
                    RefreshError::Fetch(_) => {
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

    async fn fetch(&self) -> Result<Documents, RefreshError> {
        let (discovery, jwks) = tokio::join!(
            self.source.fetch(DISCOVERY_PATH),
            self.source.fetch(JWKS_PATH)
        );
        Ok(document::validate(&self.issuer, &discovery?, &jwks?)?)
    }

    async fn export(&self, docs: Documents, exported: &mut Option<Documents>) {
        let Some(exporter) = self.exporter.clone() else {
            return;
        };
        if exported.as_ref() == Some(&docs) {
            return;
        }
        let (result, docs) = tokio::task::spawn_blocking(move || (exporter.write(&docs), docs))
            .await
            .expect("the export task does not panic");
        let label = match result {
            Ok(()) => {
                *exported = Some(docs);
                "ok"
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot export the discovery documents; retrying at the next refresh");
                "error"
            }
        };
        self.metrics
            .exports
            .get_or_create(&ResultLabels { result: label })
            .inc();
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
