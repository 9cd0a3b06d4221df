//! What every server of this crate shares: TLS with reload, listeners, the health endpoint,
//! shared metrics, signals, logging, the Kubernetes and AWS clients, atomic file writes, and the
//! HTTPS probe that fetches a public issuer the way STS does.

pub mod aws;
pub mod body;
pub mod errors;
pub mod files;
pub mod health;
pub mod kube_client;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod server;
pub mod signals;
pub mod tls;
