//! What every server of this crate shares.

pub mod files;
pub mod tls;
