//! The plain health and metrics endpoint every server runs beside its public one.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::server::{Limits, serve};
use super::shutdown::Shutdown;
use super::supervisor::Supervisor;

/// Serves [`health_router`] on `listener`, plain HTTP under the default limits, until `done`
/// (the public server has finished): probes keep being answered through the whole shutdown.
pub async fn serve_health(
    listener: TcpListener,
    supervisor: Supervisor,
    ready: impl Fn() -> Readiness + Clone + Send + Sync + 'static,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    done: CancellationToken,
) {
    let router = health_router(move || supervisor.liveness(), ready, metrics);
    serve(
        listener,
        None,
        router,
        Limits::default(),
        Shutdown::with(done),
    )
    .await;
}

/// Ready with notes that need an operator but do not stop traffic, or not ready and why.
pub type Readiness = Result<Vec<String>, String>;

/// `/livez` (503 with the reason when `live` says so), `/readyz` (503 with the reason when
/// `ready` says so, else 200 with any notes) and `/metrics` (the text `metrics` renders), for a
/// plain listener that is never exposed publicly.
pub fn health_router(
    live: impl Fn() -> Result<(), String> + Clone + Send + Sync + 'static,
    ready: impl Fn() -> Readiness + Clone + Send + Sync + 'static,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Router {
    let livez = move || {
        let live = live.clone();
        async move {
            match live() {
                Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            }
        }
    };
    let readyz = move || {
        let ready = ready.clone();
        async move {
            match ready() {
                Ok(notes) => {
                    let notes: String = notes.iter().map(|n| format!("note: {n}\n")).collect();
                    (StatusCode::OK, format!("ok\n{notes}"))
                }
                Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            }
        }
    };
    let metrics = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                metrics(),
            )
        }
    };
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
