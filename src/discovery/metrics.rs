//! Prometheus metrics of the discovery server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::serving::metrics::ResultLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// One of the two document paths, or `other`, so unknown paths cannot grow the series.
    pub path: &'static str,
    pub status: u16,
}

/// Every metric the discovery server exports.
pub struct DiscoveryMetrics {
    registry: Registry,
    /// Refreshes: `ok`, or the reason the answer was not published.
    pub fetches: Family<ResultLabels, Counter>,
    /// Unix time of the last refresh that published (or confirmed) valid documents.
    pub last_success: Gauge,
    /// Keys in the published JWKS.
    pub keys: Gauge,
    /// Public requests by path and HTTP status.
    pub requests: Family<RequestLabels, Counter>,
    /// Exports (`--export-dir`, `--export-s3`): `ok`, `unchanged` or `error`.
    pub exports: Family<ResultLabels, Counter>,
    /// Public self-checks: `ok`, `differs`, `slow` or `unreachable`.
    pub public_checks: Family<ResultLabels, Counter>,
    /// TLS certificate reloads, `ok` or `error`.
    pub tls_reloads: Family<ResultLabels, Counter>,
}

impl Default for DiscoveryMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("irsa_discovery");
        let fetches = Family::<ResultLabels, Counter>::default();
        fetches.get_or_create(&ResultLabels { result: "ok" }).get();
        let last_success = Gauge::default();
        let keys = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let exports = Family::<ResultLabels, Counter>::default();
        let public_checks = Family::<ResultLabels, Counter>::default();
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "fetches",
            "Refreshes from the API server: ok, or why the answer was not published",
            fetches.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last refresh that yielded valid documents",
            last_success.clone(),
        );
        registry.register("keys", "Keys in the published JWKS", keys.clone());
        registry.register(
            "requests",
            "Public requests by path and HTTP status",
            requests.clone(),
        );
        registry.register(
            "exports",
            "Exports of the documents (--export-dir, --export-s3) by result",
            exports.clone(),
        );
        registry.register(
            "public_checks",
            "Fetches of the documents from the public issuer URL compared with ours, by result",
            public_checks.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS certificate reloads by result",
            tls_reloads.clone(),
        );
        Self {
            registry,
            fetches,
            last_success,
            keys,
            requests,
            exports,
            public_checks,
            tls_reloads,
        }
    }
}

impl DiscoveryMetrics {
    /// Counts one refresh outcome.
    pub fn fetch(&self, result: &'static str) {
        self.fetches.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one public request.
    pub fn request(&self, path: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { path, status })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        crate::serving::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = DiscoveryMetrics::default();
        m.fetch("private_key");
        m.request("/openid/v1/jwks", 304);
        m.keys.set(2);
        let text = m.encode();
        for sample in [
            "irsa_discovery_fetches_total{result=\"ok\"} 0",
            "irsa_discovery_fetches_total{result=\"private_key\"} 1",
            "irsa_discovery_requests_total{path=\"/openid/v1/jwks\",status=\"304\"} 1",
            "irsa_discovery_keys 2",
            "irsa_discovery_last_success_timestamp_seconds 0",
        ] {
            assert!(text.contains(sample), "{sample} missing from\n{text}");
        }
    }
}
