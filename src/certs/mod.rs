//! Certificates: a CA and a serving certificate generated with rcgen, and the self-managed
//! certificate Secret whose CA follows into the webhook configuration's `caBundle`.

pub mod command;
mod generate;
pub mod secret;

pub use generate::*;
