//! The OIDC discovery server: fetch the ServiceAccount issuer's documents from the API server,
//! validate them, render our own, and serve exactly those two.
//!
//! [`document`] is pure (validation and rendering, where the tests live); [`source`] talks to the
//! API server; [`refresh`] runs the loop; [`store`] holds what is published; [`server`] answers
//! HTTP; [`export`] writes files for static hosting; [`command`] wires them into `discovery`.

pub mod command;
pub mod document;
pub mod export;
pub mod keyfiles;
pub mod leader;
pub mod metrics;
pub mod public_check;
pub mod refresh;
pub mod s3;
pub mod server;
pub mod source;
pub mod store;

use std::time::Duration;

use crate::error::ConfigError;
use document::IssuerUrl;

/// Start-up settings of the discovery server, validated together.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: IssuerUrl,
    pub refresh_interval: Duration,
    pub max_stale: Duration,
    pub fetch_timeout: Duration,
}

impl Settings {
    /// Checks the issuer URL and that the durations make sense together.
    pub fn new(
        issuer_url: &str,
        refresh_interval: Duration,
        max_stale: Duration,
        fetch_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let invalid = |flag, value: Duration, reason| ConfigError::Invalid {
            flag,
            value: humantime::format_duration(value).to_string(),
            reason,
        };
        let issuer = IssuerUrl::parse(issuer_url)?;
        if refresh_interval.is_zero() {
            return Err(invalid(
                "--refresh-interval",
                refresh_interval,
                "it must be longer than zero",
            ));
        }
        if fetch_timeout.is_zero() {
            return Err(invalid(
                "--fetch-timeout",
                fetch_timeout,
                "it must be longer than zero",
            ));
        }
        if max_stale <= refresh_interval {
            return Err(invalid(
                "--max-stale",
                max_stale,
                "it must be longer than --refresh-interval, or good documents expire between two refreshes",
            ));
        }
        Ok(Self {
            issuer,
            refresh_interval,
            max_stale,
            fetch_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_durations_that_cannot_work() {
        let s = Duration::from_secs;
        let new = |refresh, stale, timeout| {
            Settings::new("https://issuer.example", refresh, stale, timeout)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(new(s(60), s(600), s(10)), Ok(()));
        assert_eq!(
            new(s(0), s(600), s(10)).unwrap_err(),
            "--refresh-interval \"0s\" is invalid: it must be longer than zero"
        );
        assert_eq!(
            new(s(60), s(600), s(0)).unwrap_err(),
            "--fetch-timeout \"0s\" is invalid: it must be longer than zero"
        );
        assert_eq!(
            new(s(60), s(60), s(10)).unwrap_err(),
            "--max-stale \"1m\" is invalid: it must be longer than --refresh-interval, or good \
             documents expire between two refreshes"
        );
        let err = Settings::new("http://issuer.example", s(60), s(600), s(10)).unwrap_err();
        assert!(err.to_string().starts_with("--issuer-url"), "{err}");
    }
}
