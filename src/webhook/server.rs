//! The admission endpoint: `POST /mutate` read, reviewed and answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::injection::config::InjectionConfig;
use crate::injection::mutation::{Decision, ServiceAccount, mutate};
use crate::serving::body::{
    BodyBudget, BodyError, answer_abandoning, answer_early, read as read_body,
};
use crate::webhook::admission::{self, Target};
use crate::webhook::metrics::{Metrics, StatusLabels};
use crate::webhook::serviceaccounts::{Index, Lookup};

/// Largest AdmissionReview body accepted. etcd stores objects up to 1.5 MiB; a review carries
/// the object once for CREATE, plus envelope; kube-apiserver accepts request bodies up to 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Longest a request body may take to arrive: kube-apiserver's default webhook timeout, after
/// which it no longer waits for the answer.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory for bodies in flight: the first 64 KiB of every request (a usual review is a few KiB).
pub const SMALL_BODIES_BYTES: usize = 16 * 1024 * 1024;
/// Memory for the rest of large bodies: eight 3 MiB reviews at once.
pub const LARGE_BODIES_BYTES: usize = 24 * 1024 * 1024;
/// Status counted for a client that went away before its body was complete (nginx's 499).
const CLIENT_GONE: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

/// State shared by the admission handlers.
pub struct Webhook {
    pub cfg: Arc<InjectionConfig>,
    pub index: Index,
    pub metrics: Arc<Metrics>,
    /// Memory for request bodies; see [`SMALL_BODIES_BYTES`] and [`LARGE_BODIES_BYTES`].
    pub budget: BodyBudget,
}

impl Webhook {
    /// The handler state with the default body budget.
    pub fn new(cfg: Arc<InjectionConfig>, index: Index, metrics: Arc<Metrics>) -> Self {
        let budget = BodyBudget::new(SMALL_BODIES_BYTES, LARGE_BODIES_BYTES);
        Self {
            cfg,
            index,
            metrics,
            budget,
        }
    }
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
    if !is_json(&headers) {
        let message = "Content-Type must be application/json";
        return answer_early(
            webhook.reject(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
            body,
        );
    }
    let body = match read_body(
        &headers,
        body,
        MAX_BODY_BYTES,
        BODY_TIMEOUT,
        &webhook.budget,
    )
    .await
    {
        Ok(body) => body,
        Err((err, body)) => {
            let answer = |status| webhook.reject(status, &err.to_string());
            return match err {
                BodyError::TooLarge(_) => answer_early(answer(StatusCode::PAYLOAD_TOO_LARGE), body),
                BodyError::TimedOut(_) => {
                    answer_abandoning(answer(StatusCode::REQUEST_TIMEOUT), body)
                }
                BodyError::ClientGone(_) => answer_abandoning(answer(CLIENT_GONE), body),
            };
        }
    };
    let started = Instant::now();
    let bytes = &body.bytes;
    let review = match admission::parse(bytes) {
        Ok(review) => review,
        Err(err) => return webhook.reject(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let cached = match &review.target {
        Target::Other => None,
        Target::PodCreate { namespace, pod } => {
            let name = pod.service_account();
            Some(
                webhook
                    .index
                    .lookup_cached(namespace, name)
                    .ok_or_else(|| (namespace.to_string(), name.to_owned())),
            )
        }
    };
    let (review, lookup) = match cached {
        None => (review, None),
        Some(Ok(found)) => (review, Some(found)),
        Some(Err((namespace, name))) => {
            // The pod view is not held while the API server is asked: many slow lookups must
            // not pin many parsed pods. Parsing again costs microseconds.
            drop(review);
            let found = webhook.index.lookup(&namespace, &name).await;
            match admission::parse(bytes) {
                Ok(review) => (review, Some(found)),
                Err(err) => return webhook.reject(StatusCode::BAD_REQUEST, &err.to_string()),
            }
        }
    };
    let outcome = match (&review.target, &lookup) {
        (Target::PodCreate { namespace, pod }, Some(lookup)) => {
            let name = pod.service_account();
            let sa = match lookup {
                Lookup::Found(annotations) => ServiceAccount::Found(annotations.as_deref()),
                Lookup::NotFound => ServiceAccount::NotFound,
                Lookup::Unavailable(reason) => ServiceAccount::Unavailable(reason),
            };
            Some(mutate(
                pod,
                &format!("{namespace}/{name}"),
                sa,
                &webhook.cfg,
            ))
        }
        _ => None,
    };
    let (answer, outcome) = admission::answer(&review, outcome, bytes.len());
    if let (Target::PodCreate { namespace, pod }, Some(outcome)) = (&review.target, &outcome) {
        log_outcome(
            &review.uid,
            namespace,
            &pod.display_name(),
            pod.service_account(),
            outcome,
        );
    }
    let decision = outcome.as_ref().map_or("ignored", |o| o.decision.as_str());
    webhook
        .metrics
        .admitted(decision, started.elapsed().as_secs_f64());
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

impl Webhook {
    /// A refusal before review, counted by status and logged.
    fn reject(&self, status: StatusCode, message: &str) -> Response {
        self.metrics
            .rejected
            .get_or_create(&StatusLabels {
                status: status.as_u16(),
            })
            .inc();
        if status == CLIENT_GONE {
            tracing::info!(%message, "admission request abandoned by the client");
        } else {
            tracing::warn!(status = status.as_u16(), %message, "admission request refused");
        }
        (status, format!("{message}\n")).into_response()
    }
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

async fn not_found(body: Body) -> Response {
    let answer = (
        StatusCode::NOT_FOUND,
        "not found: the webhook serves POST /mutate\n",
    );
    answer_early(answer.into_response(), body)
}

async fn method_not_allowed(body: Body) -> Response {
    let answer = (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: use POST\n",
    );
    answer_early(answer.into_response(), body)
}
