//! HTTP serving: the TLS admission endpoint and the plain health/metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::injection::config::InjectionConfig;
use crate::injection::mutation::{Decision, ServiceAccount, mutate};
use crate::serving::tls::ReloadingConfig;
use crate::webhook::admission::{self, Target};
use crate::webhook::metrics::{Metrics, StatusLabels};
use crate::webhook::serviceaccounts::{Index, Lookup};

/// Largest AdmissionReview body accepted. etcd stores objects up to 1.5 MiB; a review carries
/// the object once for CREATE, plus envelope.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// How long a client may take to complete the TLS handshake or send request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by the admission handlers.
pub struct Webhook {
    pub cfg: Arc<InjectionConfig>,
    pub index: Index,
    pub metrics: Arc<Metrics>,
}

/// `POST /mutate`; every other path or method is refused with a plain message.
pub fn webhook_router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/mutate", post(handle_mutate).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(webhook)
}

/// Why a component is not ready.
pub type Readiness = Result<(), String>;

/// `/livez`, `/readyz` (503 with the reason when `ready` says so) and `/metrics` (the text
/// `metrics` renders), for a plain listener that is never exposed publicly.
pub fn health_router(
    ready: impl Fn() -> Readiness + Clone + Send + Sync + 'static,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Router {
    let readyz = move || {
        let ready = ready.clone();
        async move {
            match ready() {
                Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
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
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn handle_mutate(
    State(webhook): State<Arc<Webhook>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reject = |status: StatusCode, message: String| {
        webhook
            .metrics
            .rejected
            .get_or_create(&StatusLabels {
                status: status.as_u16(),
            })
            .inc();
        tracing::warn!(status = status.as_u16(), %message, "admission request refused");
        (status, format!("{message}\n")).into_response()
    };
    if !is_json(&headers) {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes or unreadable"),
            );
        }
    };
    let started = Instant::now();
    let review = match admission::parse(&body) {
        Ok(review) => review,
        Err(err) => return reject(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let outcome = match &review.target {
        Target::Other => None,
        Target::PodCreate { namespace, pod } => {
            let name = pod.service_account();
            let lookup = webhook.index.lookup(namespace, name).await;
            let sa = match &lookup {
                Lookup::Found(annotations) => ServiceAccount::Found(annotations.as_deref()),
                Lookup::NotFound => ServiceAccount::NotFound,
                Lookup::Unavailable(reason) => ServiceAccount::Unavailable(reason),
            };
            let outcome = mutate(pod, &format!("{namespace}/{name}"), sa, &webhook.cfg);
            log_outcome(&review.uid, namespace, &pod.display_name(), name, &outcome);
            Some(outcome)
        }
    };
    let answer = admission::respond(&review, outcome.as_ref());
    let decision = outcome.as_ref().map_or("ignored", |o| o.decision.as_str());
    webhook
        .metrics
        .admitted(decision, started.elapsed().as_secs_f64());
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

fn log_outcome(
    uid: &str,
    namespace: &str,
    pod: &str,
    sa: &str,
    o: &crate::injection::mutation::Outcome,
) {
    let decision = o.decision.as_str();
    let role = o.role_arn.as_deref().unwrap_or("");
    if !o.warnings.is_empty() {
        tracing::info!(%uid, %namespace, %pod, service_account = %sa, %decision, role, warnings = ?o.warnings, "pod admitted with warnings");
    } else if o.decision == Decision::Mutated {
        tracing::debug!(%uid, %namespace, %pod, service_account = %sa, %decision, role, "pod mutated");
    } else {
        tracing::debug!(%uid, %namespace, %pod, service_account = %sa, %decision, "pod not mutated");
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: the webhook serves POST /mutate\n",
    )
}

async fn method_not_allowed() -> (StatusCode, &'static str) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: use POST\n",
    )
}

/// Serves `router` on `listener` (over TLS when `tls` is given) with HTTP/1.1 and HTTP/2 until
/// `shutdown` is cancelled, then lets in-flight requests finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig>>,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let local = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.current());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => return log_handshake(peer, &err.to_string()),
                        Err(_) => return log_handshake(peer, "timed out"),
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                });
            }
            None => {
                tokio::spawn(async move {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!(address = ?local, "all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(address = ?local, ?drain, "connections still open after the drain timeout"),
    }
}

fn log_handshake(peer: SocketAddr, reason: &str) {
    tracing::debug!(%peer, reason, "TLS handshake failed");
}
