//! IAM Roles for Service Accounts on any Kubernetes cluster.
//!
//! One folder per capability; dependencies point one way (commands → capability →
//! [`injection`]/[`certs`] → [`serving`]):
//!
//! - [`injection`]: the pure engine (pod view, identity, mutation, manifests) and `inject`;
//! - [`webhook`]: AdmissionReview in and out, the ServiceAccount index, the admission server, `serve`;
//! - [`discovery`]: fetch, validate (pure), render, store, serve and export the OIDC documents;
//! - [`certs`]: certificate generation and the self-managed certificate Secret;
//! - [`doctor`]: the IAM side written out (`trust-policy`);
//! - [`serving`]: what every server shares (TLS with reload, listeners, health, signals, logging,
//!   the Kubernetes client).
//!
//! Pure logic has no I/O, so the decision is tested without a cluster.
#![forbid(unsafe_code)]

pub mod certs;
pub mod cli;
pub mod discovery;
pub mod doctor;
pub mod error;
pub mod injection;
pub mod serving;
pub mod webhook;
