//! The AWS SDK configuration every AWS client of this crate uses: the standard credential and
//! region chain (`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, web identity, instance metadata;
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` honoured), rustls with ring, and a
//! deadline on every call.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Loads the configuration; every operation (retries included) ends within `limit`. Without a
/// configured region, `us-east-1`: IAM is global and the SDK still needs one for its endpoint.
pub async fn config(limit: Duration) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limit.min(Duration::from_secs(5)))
                .operation_timeout(limit)
                .build(),
        )
        .load()
        .await;
    match config.region() {
        Some(_) => config,
        None => config
            .into_builder()
            .region(Region::new("us-east-1"))
            .build(),
    }
}
