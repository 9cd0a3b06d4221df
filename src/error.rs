//! Errors of start-up configuration shared by several commands.

/// A setting that cannot be used; the message names the flag and says what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} {value:?} is invalid: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
}
