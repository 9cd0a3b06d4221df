//! Stopping a server without losing a request: on SIGTERM or SIGINT it reports not ready at
//! once, keeps accepting and answering for `--shutdown-delay` (clients learn that the endpoint
//! is going only through the endpoint watch of the API server or kube-proxy, which lags), asks
//! every client to move on from the first signal (HTTP/1.1 `Connection: close` on each answer,
//! HTTP/2 GOAWAY), stops accepting after the delay and drops what is still open after
//! `--shutdown-timeout` more. A watchdog ends the process a few seconds after that whatever
//! happens to the runtime; a second signal ends it at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Grace beyond delay and drain before the watchdog ends the process regardless.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(5);

/// `--shutdown-delay` and `--shutdown-timeout`, shared by every server command.
#[derive(Debug, Clone, Args)]
pub struct ShutdownArgs {
    /// After SIGTERM, keep accepting connections this long (not ready meanwhile) so that the API
    /// server and kube-proxy stop sending new connections before the listener closes.
    #[arg(long, env = "IRSA_SHUTDOWN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// After the delay, longest wait for open connections to finish and be closed by their
    /// clients; what is still open then is dropped.
    #[arg(long, env = "IRSA_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// The phases of one server's shutdown, shared by its listeners and background tasks.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Cancelled on the first signal (or a fatal task failure): not ready, clients asked to
    /// move on, background work winds down.
    pub draining: CancellationToken,
    /// Cancelled when the shutdown delay has passed: listeners stop accepting.
    pub closing: CancellationToken,
    /// Cancelled when the drain timeout has passed too: open connections are dropped.
    pub stopped: CancellationToken,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    delay: Duration,
    drain: Duration,
    /// When draining began.
    began: Mutex<Option<Instant>>,
    /// Whether the process should exit non-zero (a supervised task failed).
    failed: AtomicBool,
    /// Whether a watchdog thread ends the process after delay, drain and a margin.
    watchdog: bool,
}

impl Shutdown {
    /// Phases that advance only through [`Shutdown::begin`] (tests, or a caller's own signal).
    pub fn new(delay: Duration, drain: Duration) -> Self {
        Self::build(delay, drain, false)
    }

    fn build(delay: Duration, drain: Duration, watchdog: bool) -> Self {
        Self {
            draining: CancellationToken::new(),
            closing: CancellationToken::new(),
            stopped: CancellationToken::new(),
            inner: Arc::new(Inner {
                delay,
                drain,
                began: Mutex::new(None),
                failed: AtomicBool::new(false),
                watchdog,
            }),
        }
    }

    /// Phases driven by SIGTERM and SIGINT (call from inside the runtime).
    pub fn on_signal(args: &ShutdownArgs) -> Self {
        let shutdown = Self::build(args.shutdown_delay, args.shutdown_timeout, true);
        tokio::spawn(shutdown.clone().follow_signals());
        shutdown
    }

    /// Phases that all pass at once when `done` is cancelled: for a listener that only lives as
    /// long as another server (the health endpoint).
    pub fn with(done: CancellationToken) -> Self {
        let shutdown = Self::new(Duration::ZERO, Duration::ZERO);
        Self {
            draining: done.clone(),
            closing: done.clone(),
            stopped: done,
            ..shutdown
        }
    }

    /// Starts the shutdown (once; later calls do nothing): draining now, closing after the
    /// delay, stopped after the drain, and the watchdog.
    pub fn begin(&self) {
        {
            let mut began = self.inner.began.lock().unwrap_or_else(|e| e.into_inner());
            if began.is_some() {
                return;
            }
            *began = Some(Instant::now());
        }
        self.draining.cancel();
        let (delay, drain) = (self.inner.delay, self.inner.drain);
        let (closing, stopped) = (self.closing.clone(), self.stopped.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            closing.cancel();
            tokio::time::sleep(drain).await;
            stopped.cancel();
        });
        if !self.inner.watchdog {
            return;
        }
        let limit = delay + drain + HARD_STOP_MARGIN;
        std::thread::Builder::new()
            .name("irsa-hard-stop".into())
            .spawn(move || {
                std::thread::sleep(limit);
                std::process::exit(1);
            })
            .ok();
    }

    /// Starts the shutdown because something the process needs has failed; it exits non-zero.
    pub fn fail(&self) {
        self.inner.failed.store(true, Ordering::Release);
        self.begin();
    }

    /// Whether [`Shutdown::fail`] was called.
    pub fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// How long ago draining began, if it has.
    pub fn since_began(&self) -> Option<Duration> {
        let began = *self.inner.began.lock().unwrap_or_else(|e| e.into_inner());
        began.map(|at| at.elapsed())
    }

    async fn follow_signals(self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let (delay, drain) = (self.inner.delay, self.inner.drain);
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = self.draining.cancelled() => "",
        };
        if !signal.is_empty() {
            tracing::info!(
                signal,
                delay = %humantime::format_duration(delay),
                drain = %humantime::format_duration(drain),
                "shutting down: not ready, still accepting for the delay, then draining"
            );
            self.begin();
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without waiting for the drain");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_pass_in_order_after_delay_and_drain() {
        let shutdown = Shutdown::new(Duration::from_secs(5), Duration::from_secs(20));
        assert!(!shutdown.draining.is_cancelled());
        assert_eq!(shutdown.since_began(), None);
        shutdown.begin();
        assert!(shutdown.draining.is_cancelled());
        assert!(!shutdown.closing.is_cancelled());
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert!(
            !shutdown.closing.is_cancelled(),
            "still accepting in the delay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(shutdown.closing.is_cancelled());
        assert!(!shutdown.stopped.is_cancelled());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(shutdown.stopped.is_cancelled());
        assert!(!shutdown.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn begin_twice_keeps_the_first_schedule_and_fail_marks_the_exit() {
        let shutdown = Shutdown::new(Duration::from_secs(1), Duration::from_secs(1));
        shutdown.begin();
        tokio::time::sleep(Duration::from_millis(900)).await;
        shutdown.fail();
        assert!(shutdown.failed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            shutdown.closing.is_cancelled(),
            "not restarted by the second call"
        );
    }

    #[tokio::test]
    async fn with_passes_every_phase_at_once() {
        let done = CancellationToken::new();
        let shutdown = Shutdown::with(done.clone());
        done.cancel();
        assert!(shutdown.draining.is_cancelled() && shutdown.stopped.is_cancelled());
    }
}
