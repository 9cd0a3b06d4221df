//! `doctor` checks the whole chain a pod's AWS identity depends on (API server issuer and keys,
//! public discovery documents, IAM provider and role, webhook, pod); `trust-policy` writes the
//! IAM side out. Pure logic (comparisons, token reading, trust-policy rendering and evaluation,
//! selectors, the report) is apart from the I/O that gathers what it judges.

mod chain;
pub mod command;
mod compare;
mod dry_run;
mod iam;
mod jwt;
mod report;
mod selector;
pub mod trust_policy;
mod webhook;
mod workload;
