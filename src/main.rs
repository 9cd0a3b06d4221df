//! `irsa-webhook`: see `irsa-webhook --help`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    irsa_webhook::serving::tls::install_default_provider();
    match irsa_webhook::cli::Cli::parse_and_run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed standard error must not turn the exit code into a panic's.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
