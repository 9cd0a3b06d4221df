//! Prometheus metrics of the webhook.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::injection::mutation::Decision;
use crate::serving::metrics::{ResultLabels, encode};

/// Buckets from 10 µs to 5 s: an in-memory admission takes tens of microseconds, an API
/// fallback milliseconds, so the low end must resolve microseconds.
const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    /// Admission reviews answered, by decision (`ignored` for non-Pod-CREATE requests).
    pub admissions: Family<DecisionLabels, Counter>,
    /// Requests refused before review (400, 413, 415, ...), by HTTP status.
    pub rejected: Family<StatusLabels, Counter>,
    /// Time from a complete request body to a serialised answer.
    pub admission_duration: Histogram,
    /// ServiceAccount lookups: `cache`, `api_found`, `api_not_found`, `api_error`, `not_found`.
    pub lookups: Family<ResultLabels, Counter>,
    /// ServiceAccounts in the index.
    pub service_accounts: Gauge,
    /// ServiceAccounts in the index with a role annotation.
    pub annotated_service_accounts: Gauge,
    /// Index (re)lists completed.
    pub index_syncs: Counter,
    /// Errors of the ServiceAccount watch (each followed by a retry with backoff).
    pub watch_errors: Counter,
    /// TLS certificate reloads, `ok` or `error`.
    pub tls_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("irsa_webhook");
        let admissions = Family::<DecisionLabels, Counter>::default();
        for decision in Decision::ALL.iter().map(|d| d.as_str()).chain(["ignored"]) {
            admissions.get_or_create(&DecisionLabels { decision }).get();
        }
        let rejected = Family::<StatusLabels, Counter>::default();
        let admission_duration = Histogram::new(LATENCY_BUCKETS);
        let lookups = Family::<ResultLabels, Counter>::default();
        let service_accounts = Gauge::default();
        let annotated_service_accounts = Gauge::default();
        let index_syncs = Counter::default();
        let watch_errors = Counter::default();
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by decision",
            admissions.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused before review, by HTTP status",
            rejected.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review once its body is read",
            admission_duration.clone(),
        );
        registry.register(
            "serviceaccount_lookups",
            "ServiceAccount lookups by result",
            lookups.clone(),
        );
        registry.register(
            "serviceaccounts",
            "ServiceAccounts in the index",
            service_accounts.clone(),
        );
        registry.register(
            "annotated_serviceaccounts",
            "ServiceAccounts in the index with a role annotation",
            annotated_service_accounts.clone(),
        );
        registry.register(
            "index_syncs",
            "Complete lists of ServiceAccounts loaded into the index",
            index_syncs.clone(),
        );
        registry.register(
            "serviceaccount_watch_errors",
            "Errors of the ServiceAccount watch, each retried with backoff",
            watch_errors.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS certificate reloads by result",
            tls_reloads.clone(),
        );
        Self {
            registry,
            admissions,
            rejected,
            admission_duration,
            lookups,
            service_accounts,
            annotated_service_accounts,
            index_syncs,
            watch_errors,
            tls_reloads,
        }
    }
}

impl Metrics {
    /// Counts one answered review.
    pub fn admitted(&self, decision: &'static str, seconds: f64) {
        self.admissions
            .get_or_create(&DecisionLabels { decision })
            .inc();
        self.admission_duration.observe(seconds);
    }

    /// Counts one lookup result.
    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_fine_buckets_and_every_decision() {
        let m = Metrics::default();
        m.admitted("mutated", 0.000_03);
        let text = m.encode();
        assert!(
            text.contains("irsa_webhook_admission_duration_seconds_bucket{le=\"0.00001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("irsa_webhook_admission_duration_seconds_bucket{le=\"0.00005\"} 1"),
            "{text}"
        );
        assert!(text.contains("irsa_webhook_admissions_total{decision=\"mutated\"} 1"));
        assert!(text.contains("irsa_webhook_admissions_total{decision=\"volume_conflict\"} 0"));
    }
}
