//! Shutdown on SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Grace beyond the drain timeout before the process is ended regardless.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(5);

/// The shutdown signal and the "draining" flag of a server, with the handler of
/// [`shutdown_on_signal`] running in the background (call from inside the runtime).
pub fn on_signal(drain: Duration) -> (CancellationToken, Arc<AtomicBool>) {
    let shutdown = CancellationToken::new();
    let draining = Arc::new(AtomicBool::new(false));
    tokio::spawn(shutdown_on_signal(
        shutdown.clone(),
        draining.clone(),
        drain,
    ));
    (shutdown, draining)
}

/// On SIGTERM or SIGINT: report not ready, then stop accepting and drain. Should the drain not
/// end the process within `drain` (plus a few seconds), a watchdog thread ends it, so a stop
/// never depends on the runtime's health; a second signal ends it at once.
pub async fn shutdown_on_signal(
    shutdown: CancellationToken,
    draining: Arc<AtomicBool>,
    drain: Duration,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    draining.store(true, Ordering::Release);
    shutdown.cancel();
    let limit = drain + HARD_STOP_MARGIN;
    std::thread::Builder::new()
        .name("irsa-hard-stop".into())
        .spawn(move || {
            std::thread::sleep(limit);
            std::process::exit(1);
        })
        .ok();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting without waiting for the drain");
    std::process::exit(1);
}
