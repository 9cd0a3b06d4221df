//! Checks of the whole chain, and the IAM side written out: so far the trust policy that lets
//! given ServiceAccounts assume a role.

pub mod command;
pub mod trust_policy;
