//! Long-lived background work (the ServiceAccount watch, certificate upkeep, the discovery
//! refresh, leader election) under supervision: a task that ends before the shutdown began, or
//! panics at any time, is logged as an error, makes `/livez` fail, and shuts the process down
//! so that it exits non-zero and the kubelet restarts it. A process never keeps answering
//! from state that nothing keeps current any more.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinError;
use tokio_util::task::TaskTracker;

use super::shutdown::Shutdown;

/// Spawns and watches a server's background tasks; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shutdown: Shutdown,
    failure: Arc<Mutex<Option<String>>>,
    tasks: TaskTracker,
}

impl Supervisor {
    /// Tasks that fail start `shutdown` (as a failure).
    pub fn new(shutdown: Shutdown) -> Self {
        Self {
            shutdown,
            failure: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Runs `task` in the background. It is expected to run until the shutdown begins; ending
    /// earlier, or panicking, is a failure of the process.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = handle => outcome,
                // The process is ending anyway: stop watching.
                () = this.shutdown.stopped.cancelled() => return,
            };
            let why = match outcome {
                Ok(()) if this.shutdown.draining.is_cancelled() => return,
                Ok(()) => "ended unexpectedly".to_owned(),
                Err(err) => describe(err),
            };
            this.failed(name, &why);
        });
    }

    fn failed(&self, name: &str, why: &str) {
        tracing::error!(
            task = name,
            "background task {why}; shutting down so that the process is restarted"
        );
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| format!("{name} {why}"));
        self.shutdown.fail();
    }

    /// `Ok` while every task runs as it should; the first failure otherwise (for `/livez`).
    pub fn liveness(&self) -> Result<(), String> {
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(failure) => Err(failure.clone()),
        }
    }

    /// Waits until every task spawned so far has ended.
    pub async fn finished(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn describe(err: JoinError) -> String {
    if !err.is_panic() {
        return format!("was cancelled: {err}");
    }
    let panic = err.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_task_that_ends_early_fails_liveness_and_starts_a_failed_shutdown() {
        let shutdown = Shutdown::new(Duration::from_secs(60), Duration::from_secs(60));
        let supervisor = Supervisor::new(shutdown.clone());
        supervisor.spawn("forever", std::future::pending());
        supervisor.spawn("watch", async {});
        settle().await;
        assert_eq!(
            supervisor.liveness(),
            Err("watch ended unexpectedly".to_owned())
        );
        assert!(shutdown.draining.is_cancelled() && shutdown.failed());
    }

    #[tokio::test]
    async fn a_panic_is_named_with_its_message() {
        let shutdown = Shutdown::new(Duration::from_secs(60), Duration::from_secs(60));
        let supervisor = Supervisor::new(shutdown.clone());
        supervisor.spawn("maintain", async { panic!("certificate store vanished") });
        settle().await;
        assert_eq!(
            supervisor.liveness(),
            Err("maintain panicked: certificate store vanished".to_owned())
        );
        assert!(shutdown.failed());
    }

    #[tokio::test]
    async fn tasks_that_end_after_the_shutdown_began_are_fine() {
        let shutdown = Shutdown::new(Duration::from_secs(60), Duration::from_secs(60));
        let supervisor = Supervisor::new(shutdown.clone());
        let draining = shutdown.draining.clone();
        supervisor.spawn("refresh", async move { draining.cancelled().await });
        settle().await;
        assert_eq!(supervisor.liveness(), Ok(()));
        shutdown.begin();
        tokio::time::timeout(Duration::from_secs(5), supervisor.finished())
            .await
            .unwrap();
        settle().await;
        assert_eq!(supervisor.liveness(), Ok(()));
        assert!(!shutdown.failed());
    }
}
