//! Metric pieces both servers share: result labels, TLS reload counting and the exposition.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::tls::TlsError;

/// A `result` label (`ok`, `error`, `cache`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// A TLS reload hook counting results into `family` as `ok` or `error`.
pub fn count_reloads(
    family: &Family<ResultLabels, Counter>,
) -> impl Fn(Result<(), &TlsError>) + Send + Sync + 'static {
    let family = family.clone();
    move |result| {
        let result = if result.is_ok() { "ok" } else { "error" };
        family.get_or_create(&ResultLabels { result }).inc();
    }
}

/// The OpenMetrics text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}
