//! The lifetimes Kubernetes accepts for a projected ServiceAccount token: one place for the
//! bounds that the flags, the annotations and the Google Cloud profile check.

use std::ops::RangeInclusive;

/// Kubernetes refuses projected tokens that live shorter than this (and AWS SDKs refresh early).
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
/// Kubernetes refuses projected tokens that live longer than 2^32 seconds.
pub const MAX_TOKEN_EXPIRATION: i64 = 1 << 32;
/// Both bounds.
pub const TOKEN_EXPIRATION: RangeInclusive<i64> = MIN_TOKEN_EXPIRATION..=MAX_TOKEN_EXPIRATION;
/// The bounds in words, for refusals that must be `&'static str`.
pub const BETWEEN: &str = "must be between 600 and 4294967296 seconds";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_name_the_bounds() {
        assert_eq!(
            BETWEEN,
            format!("must be between {MIN_TOKEN_EXPIRATION} and {MAX_TOKEN_EXPIRATION} seconds")
        );
    }
}
