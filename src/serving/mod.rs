//! What every server of this crate shares: TLS with reload, listeners, the health endpoint,
//! shared metrics, signals, logging, the Kubernetes client and atomic file writes.

pub mod body;
pub mod errors;
pub mod files;
pub mod health;
pub mod kube_client;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod signals;
pub mod tls;
