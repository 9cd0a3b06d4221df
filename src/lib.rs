//! IAM Roles for Service Accounts on any Kubernetes cluster.
//!
//! Pure logic ([`identity`], [`mutation`], [`pod`], [`manifest`], [`inject`],
//! [`discovery::document`]) is kept apart from I/O ([`admission`] parsing aside:
//! [`serviceaccounts`], [`tls`], [`server`], [`discovery`], [`cli`]) so the decision is tested
//! without a cluster.
#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod certsecret;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod error;
pub mod files;
pub mod identity;
pub mod inject;
pub mod manifest;
pub mod metrics;
pub mod mutation;
pub mod pod;
pub mod server;
pub mod serviceaccounts;
pub mod tls;
