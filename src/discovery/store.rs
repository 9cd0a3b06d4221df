//! The published documents, swapped atomically, and what readiness follows from them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use axum::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::document::{Documents, Rendered};
use crate::serving::health::Readiness;

/// One document ready to send: cloning it per request copies no bytes.
#[derive(Debug, Clone)]
pub struct Served {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl From<&Rendered> for Served {
    fn from(doc: &Rendered) -> Self {
        Self {
            body: Bytes::copy_from_slice(&doc.body),
            etag: HeaderValue::from_str(&doc.etag)
                .expect("a quoted base64url hash is a valid header"),
        }
    }
}

/// The documents of the last good refresh and when it happened.
#[derive(Debug)]
pub struct Snapshot {
    pub discovery: Served,
    pub jwks: Served,
    fetched: Instant,
}

/// The last failed refresh, for `/readyz`.
struct Failure {
    message: String,
    /// An issuer mismatch makes us not ready at once, even with good older documents.
    blocks_readiness: bool,
}

/// Something besides the documents that needs an operator: a failed export, a public issuer
/// that differs from what we serve.
struct Problem {
    message: String,
    blocks_readiness: bool,
}

/// Shared by the refresh loop (writer) and the servers (readers).
pub struct Store {
    current: ArcSwapOption<Snapshot>,
    max_stale: Duration,
    failure: Mutex<Option<Failure>>,
    /// By what they concern (`export to s3://…`, `public check`).
    problems: Mutex<BTreeMap<String, Problem>>,
    draining: CancellationToken,
}

impl Store {
    /// Empty until the first [`publish`](Self::publish); documents older than `max_stale` are not
    /// served.
    pub fn new(max_stale: Duration, draining: CancellationToken) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            max_stale,
            failure: Mutex::new(None),
            problems: Mutex::default(),
            draining,
        }
    }

    /// Records a good refresh; returns true when the documents differ from the previous ones.
    pub fn publish(&self, docs: &Documents) -> bool {
        let previous = self.current.load_full();
        let changed = previous.as_ref().is_none_or(|p| {
            p.discovery.etag != docs.discovery.etag || p.jwks.etag != docs.jwks.etag
        });
        let snapshot = match previous.as_deref() {
            // Same bytes: keep sharing them, only the freshness moves.
            Some(p) if !changed => Snapshot {
                discovery: p.discovery.clone(),
                jwks: p.jwks.clone(),
                fetched: Instant::now(),
            },
            _ => Snapshot {
                discovery: Served::from(&docs.discovery),
                jwks: Served::from(&docs.jwks),
                fetched: Instant::now(),
            },
        };
        self.current.store(Some(Arc::new(snapshot)));
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        changed
    }

    /// Records a failed refresh; the documents already published stay.
    pub fn fail(&self, message: String, blocks_readiness: bool) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
            message,
            blocks_readiness,
        });
    }

    /// Records (`Some`) or clears (`None`) a problem concerning `what`; a blocking one makes the
    /// server not ready, the others are notes on `/readyz`.
    pub fn report(&self, what: &str, problem: Option<(String, bool)>) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some((message, blocks_readiness)) => {
                problems.insert(
                    what.to_owned(),
                    Problem {
                        message,
                        blocks_readiness,
                    },
                );
            }
            None => {
                problems.remove(what);
            }
        }
    }

    /// The documents, unless none were ever fetched or the last good fetch is too old.
    pub fn fresh(&self) -> Option<Arc<Snapshot>> {
        self.current
            .load_full()
            .filter(|s| s.fetched.elapsed() <= self.max_stale)
    }

    /// `Ok` (with notes on non-blocking problems) when the public paths answer and nothing
    /// blocks; otherwise why not.
    pub fn readiness(&self) -> Readiness {
        if self.draining.is_cancelled() {
            return Err("shutting down".into());
        }
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let last_error = failure
            .as_ref()
            .map(|f| format!("; last error: {}", f.message))
            .unwrap_or_default();
        match self.current.load().as_deref() {
            None => Err(format!("no valid documents fetched yet{last_error}")),
            Some(s) if s.fetched.elapsed() > self.max_stale => Err(format!(
                "no valid documents for {}, longer than --max-stale{last_error}",
                humantime::format_duration(Duration::from_secs(s.fetched.elapsed().as_secs()))
            )),
            Some(_) => match failure.as_ref() {
                Some(f) if f.blocks_readiness => Err(f.message.clone()),
                _ => {
                    let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
                    let said = |p: (&String, &Problem)| format!("{}: {}", p.0, p.1.message);
                    let blocking: Vec<String> = problems
                        .iter()
                        .filter(|(_, p)| p.blocks_readiness)
                        .map(said)
                        .collect();
                    if blocking.is_empty() {
                        Ok(problems.iter().map(said).collect())
                    } else {
                        Err(blocking.join("; "))
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::document::sample_documents as docs;

    fn store(max_stale: Duration) -> Store {
        Store::new(max_stale, CancellationToken::new())
    }

    #[test]
    fn not_ready_and_nothing_served_before_the_first_good_fetch() {
        let store = store(Duration::from_secs(60));
        assert!(store.fresh().is_none());
        assert_eq!(
            store.readiness().unwrap_err(),
            "no valid documents fetched yet"
        );
        store.fail("GET /openid/v1/jwks failed: refused".into(), false);
        assert_eq!(
            store.readiness().unwrap_err(),
            "no valid documents fetched yet; last error: GET /openid/v1/jwks failed: refused"
        );
        assert!(store.publish(&docs("a")));
        assert!(store.fresh().is_some());
        assert_eq!(store.readiness(), Ok(Vec::new()));
    }

    #[test]
    fn publish_reports_changes_and_shares_unchanged_bytes() {
        let store = store(Duration::from_secs(60));
        assert!(store.publish(&docs("a")));
        let first = store.fresh().unwrap();
        assert!(!store.publish(&docs("a")));
        let second = store.fresh().unwrap();
        assert_eq!(first.jwks.body.as_ptr(), second.jwks.body.as_ptr());
        assert!(store.publish(&docs("b")));
        assert_ne!(store.fresh().unwrap().jwks.etag, first.jwks.etag);
    }

    #[test]
    fn a_failure_keeps_the_documents_and_only_an_issuer_mismatch_blocks_readiness() {
        let store = store(Duration::from_secs(60));
        store.publish(&docs("a"));
        store.fail("the JWKS is not a JSON object".into(), false);
        assert!(store.fresh().is_some());
        assert_eq!(store.readiness(), Ok(Vec::new()));
        store.fail("the API server's issuer differs".into(), true);
        assert!(store.fresh().is_some(), "still served until stale");
        assert_eq!(
            store.readiness().unwrap_err(),
            "the API server's issuer differs"
        );
        store.publish(&docs("a"));
        assert_eq!(store.readiness(), Ok(Vec::new()));
    }

    #[test]
    fn problems_are_notes_unless_they_block_and_clear_when_solved() {
        let store = store(Duration::from_secs(60));
        store.publish(&docs("a"));
        store.report("export to s3://b", Some(("access denied".into(), false)));
        assert_eq!(
            store.readiness(),
            Ok(vec!["export to s3://b: access denied".to_owned()])
        );
        store.report("public check", Some(("stale keys".into(), true)));
        assert_eq!(store.readiness().unwrap_err(), "public check: stale keys");
        store.report("public check", None);
        store.report("export to s3://b", None);
        assert_eq!(store.readiness(), Ok(Vec::new()));
    }

    #[test]
    fn stale_documents_are_neither_served_nor_ready() {
        let store = store(Duration::ZERO);
        store.publish(&docs("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.fresh().is_none());
        let err = store.readiness().unwrap_err();
        assert!(err.contains("longer than --max-stale"), "{err}");
    }

    #[test]
    fn draining_is_not_ready() {
        let draining = CancellationToken::new();
        let store = Store::new(Duration::from_secs(60), draining.clone());
        store.publish(&docs("a"));
        draining.cancel();
        assert_eq!(store.readiness().unwrap_err(), "shutting down");
    }
}
