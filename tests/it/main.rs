//! The integration tests, one module per subject, linked into one executable that compiles
//! `support` once. `scripts/test.sh` runs each module in a process of its own (`it chart::`, ...),
//! as separate test executables ran before; `cargo test --test it MODULE::` runs one.

mod support;

mod chart;
mod discovery;
mod discovery_publish;
mod docs;
mod doctor;
mod e2e;
mod e2e_faults;
mod e2e_list_fallback;
mod fuzz_admission;
mod hostile;
mod inject;
mod real_node;
mod serve;
mod terraform;
mod trust_chain;
mod workflows;
