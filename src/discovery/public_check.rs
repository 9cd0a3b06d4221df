//! `--public-check-interval`: fetches our documents from the public issuer URL as STS would
//! and compares them with what we serve, so a publication that drifted (another host, a node
//! registered under another name, a stale bucket after a key rotation, an unreachable or slow
//! endpoint) is reported within one interval: logged, counted, and a note (or, with
//! `--public-check-required`, the reason) on `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::document::{DISCOVERY_PATH, IssuerUrl, MAX_BODY_BYTES};
use super::metrics::DiscoveryMetrics;
use super::store::{Snapshot, Store};
use crate::serving::metrics::ResultLabels;
use crate::serving::probe::{self, Roots};

/// Slower than this, the public endpoint is reported.
const SLOW: Duration = Duration::from_secs(1);
/// Longest wait for each public document.
const LIMIT: Duration = Duration::from_secs(10);
/// How the check is named on `/readyz`.
const NAME: &str = "public check";

/// Everything the check needs.
pub struct PublicCheck {
    pub issuer: IssuerUrl,
    pub roots: Roots,
    pub interval: Duration,
    /// Whether a difference makes the server not ready.
    pub required: bool,
    pub store: Arc<Store>,
    pub metrics: Arc<DiscoveryMetrics>,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    /// For metrics.
    result: &'static str,
    message: String,
}

impl PublicCheck {
    /// Checks every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
            let Some(ours) = self.store.fresh() else {
                continue;
            };
            let finding = self.check(&ours).await;
            let result = finding.as_ref().map_or("ok", |f| f.result);
            self.metrics
                .public_checks
                .get_or_create(&ResultLabels { result })
                .inc();
            match finding {
                None => self.store.report(NAME, None),
                Some(f) => {
                    tracing::warn!(issuer = self.issuer.as_str(), result, "{}", f.message);
                    self.store.report(NAME, Some((f.message, self.required)));
                }
            }
        }
    }

    async fn check(&self, ours: &Snapshot) -> Option<Finding> {
        let base = self.issuer.as_str().trim_end_matches('/');
        let discovery_url = format!("{base}{DISCOVERY_PATH}");
        let discovery = match self.fetch(&discovery_url).await {
            Ok(answer) => answer,
            Err(finding) => return Some(finding),
        };
        if discovery.body != ours.discovery.body.as_ref() {
            return Some(differs(
                &discovery_url,
                &describe_discovery(&discovery.body, &ours.discovery.body),
            ));
        }
        let jwks_uri = serde_json::from_slice::<Value>(&ours.discovery.body)
            .ok()
            .and_then(|d| d["jwks_uri"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let jwks = match self.fetch(&jwks_uri).await {
            Ok(answer) => answer,
            Err(finding) => return Some(finding),
        };
        if jwks.body != ours.jwks.body.as_ref() {
            return Some(differs(
                &jwks_uri,
                &describe_jwks(&jwks.body, &ours.jwks.body),
            ));
        }
        let slowest = discovery.elapsed.max(jwks.elapsed);
        (slowest > SLOW).then(|| Finding {
            result: "slow",
            message: format!(
                "the public documents took up to {} ms; STS gives up after about 5 s",
                slowest.as_millis()
            ),
        })
    }

    async fn fetch(&self, url: &str) -> Result<probe::Answer, Finding> {
        let unreachable = |message: String| Finding {
            result: "unreachable",
            message,
        };
        let answer = probe::get(url, &self.roots, LIMIT, MAX_BODY_BYTES)
            .await
            .map_err(|e| unreachable(format!("GET {url}: {e}")))?;
        if answer.status != 200 {
            return Err(unreachable(format!(
                "GET {url} answered HTTP {}",
                answer.status
            )));
        }
        let trusted =
            matches!(answer.seen.public, Some(Ok(()))) || matches!(answer.seen.extra, Some(Ok(())));
        if !trusted {
            return Err(unreachable(format!(
                "GET {url}: the certificate is not trusted ({})",
                answer
                    .seen
                    .public
                    .iter()
                    .chain(&answer.seen.extra)
                    .filter_map(|v| v.as_ref().err().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok(answer)
    }
}

fn differs(url: &str, how: &str) -> Finding {
    Finding {
        result: "differs",
        message: format!("{url} differs from what this server publishes: {how}"),
    }
}

/// What differs between the public discovery document and ours.
fn describe_discovery(public: &[u8], ours: &[u8]) -> String {
    let (public, ours) = (json(public), json(ours));
    for field in ["issuer", "jwks_uri"] {
        if public[field] != ours[field] {
            return format!("{field} is {} there, {} here", public[field], ours[field]);
        }
    }
    "the bytes differ".into()
}

/// What differs between the public key set and ours: missing (stale) and extra key ids.
fn describe_jwks(public: &[u8], ours: &[u8]) -> String {
    let kids = |doc: &Value| -> Vec<String> {
        doc["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect()
    };
    let (public, ours) = (kids(&json(public)), kids(&json(ours)));
    let missing: Vec<&String> = ours.iter().filter(|k| !public.contains(k)).collect();
    let extra: Vec<&String> = public.iter().filter(|k| !ours.contains(k)).collect();
    match (missing.is_empty(), extra.is_empty()) {
        (false, _) => format!("it lacks keys {missing:?} (stale after a key rotation?)"),
        (true, false) => format!("it has keys {extra:?} that are no longer published here"),
        (true, true) => "the bytes differ".into(),
    }
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_described_by_what_matters() {
        let ours = br#"{"issuer":"https://a","jwks_uri":"https://a/openid/v1/jwks"}"#;
        let other = br#"{"issuer":"https://b","jwks_uri":"https://a/openid/v1/jwks"}"#;
        assert_eq!(
            describe_discovery(other, ours),
            r#"issuer is "https://b" there, "https://a" here"#
        );
        assert_eq!(describe_discovery(b"{ }", b"{}"), "the bytes differ");
        let ours = br#"{"keys":[{"kid":"new"},{"kid":"old"}]}"#;
        let stale = br#"{"keys":[{"kid":"old"}]}"#;
        assert_eq!(
            describe_jwks(stale, ours),
            r#"it lacks keys ["new"] (stale after a key rotation?)"#
        );
        let retired = br#"{"keys":[{"kid":"new"},{"kid":"old"},{"kid":"gone"}]}"#;
        assert_eq!(
            describe_jwks(retired, ours),
            r#"it has keys ["gone"] that are no longer published here"#
        );
    }
}
