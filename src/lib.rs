//! IAM Roles for Service Accounts on any Kubernetes cluster.
//!
//! Pure logic ([`identity`], [`mutation`], [`pod`]) is kept apart from I/O ([`admission`],
//! [`serviceaccounts`], [`tls`], [`server`]) so the decision is tested without a cluster.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod identity;
pub mod mutation;
pub mod pod;
