//! The pure injection engine: the lean pod view, identity resolution, the mutation, manifests and
//! the offline `inject` command built on them.

pub mod clouds;
pub mod command;
pub mod config;
pub mod flags;
pub mod identity;
pub mod inject;
pub mod lifetime;
pub mod manifest;
pub mod mutation;
pub mod patch;
pub mod pod;
pub mod schema;
