//! What every server of this crate shares: TLS with reload, listeners, the health endpoint,
//! shared metrics, shutdown and task supervision, logging, the Kubernetes and AWS clients,
//! atomic file writes, and the HTTPS probe that fetches a public issuer the way STS does.

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
pub mod shutdown;
pub mod supervisor;
pub mod tls;
