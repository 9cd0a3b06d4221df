//! The mutating admission webhook: AdmissionReview in and out, the ServiceAccount index, the
//! admission server and its metrics.

pub mod admission;
pub mod command;
pub mod compat;
pub mod metrics;
pub mod server;
pub mod serviceaccounts;
