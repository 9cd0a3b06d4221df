//! Logging to standard error, as text or JSON, filtered like `RUST_LOG`.
//!
//! Lines go through a bounded queue to a writer thread, so a slow or closed standard error
//! never blocks a request or the shutdown, and a failed write never panics: when the queue is
//! full, lines are dropped (and counted by the writer).

use anyhow::{Context, Result};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// Log format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines queued for standard error before new ones are dropped.
const QUEUED_LINES: usize = 16 * 1024;

/// Installs the global subscriber; `filter` is an `EnvFilter` directive such as `info`. Keep
/// the guard until the process ends: dropping it flushes what is queued (for at most a second).
pub fn init(format: LogFormat, filter: &str) -> Result<WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("--log-level {filter:?} is not a valid filter"))?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("irsa-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colours())
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}

/// ANSI colours only on a terminal, and never with `NO_COLOR` set.
fn colours() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
