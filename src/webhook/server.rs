//! The admission endpoint: `POST /mutate` read, reviewed and answered.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::injection::config::InjectionConfig;
use crate::injection::mutation::{Decision, ServiceAccount, mutate};
use crate::webhook::admission::{self, Target};
use crate::webhook::metrics::{Metrics, StatusLabels};
use crate::webhook::serviceaccounts::{Index, Lookup};

/// Largest AdmissionReview body accepted. etcd stores objects up to 1.5 MiB; a review carries
/// the object once for CREATE, plus envelope.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

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
