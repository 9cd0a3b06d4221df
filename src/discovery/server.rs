//! The public routes (exactly the two documents) and the private health and metrics routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::Settings;
use super::document::{DISCOVERY_PATH, JWKS_PATH, Kind};
use super::metrics::DiscoveryMetrics;
use super::store::{Served, Snapshot, Store};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const JWK_SET: HeaderValue = HeaderValue::from_static("application/jwk-set+json");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// State of the public routes.
struct Public {
    store: Arc<Store>,
    metrics: Arc<DiscoveryMetrics>,
    cache_control: HeaderValue,
}

/// GET/HEAD of the two documents at the root and, for an issuer with a path, also below that
/// path: STS asks for `<issuer>/.well-known/openid-configuration`, and a proxy in front may or
/// may not strip the prefix. Everything else is 404, other methods 405.
pub fn public_router(
    store: Arc<Store>,
    metrics: Arc<DiscoveryMetrics>,
    settings: &Settings,
) -> Router {
    // A cache never keeps a copy longer than we wait before looking for a newer one.
    let max_age = settings.refresh_interval.as_secs();
    let public = Arc::new(Public {
        store,
        metrics,
        cache_control: HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .expect("digits make a valid header"),
    });
    // Issuer paths are literal: a segment like `:team` is not an axum 0.7 capture.
    let mut router = Router::new().without_v07_checks();
    let mut prefixes = vec![""];
    if !settings.issuer.path().is_empty() {
        prefixes.push(settings.issuer.path());
    }
    for prefix in prefixes {
        router = router
            .route(
                &format!("{prefix}{DISCOVERY_PATH}"),
                any(|State(p): State<Arc<Public>>, req: Request| async move {
                    p.respond(Kind::Discovery, &req)
                }),
            )
            .route(
                &format!("{prefix}{JWKS_PATH}"),
                any(|State(p): State<Arc<Public>>, req: Request| async move {
                    p.respond(Kind::Jwks, &req)
                }),
            );
    }
    router.fallback(not_found).with_state(public)
}

impl Public {
    fn respond(&self, doc: Kind, req: &Request) -> Response {
        let response = match *req.method() {
            Method::GET | Method::HEAD => match self.store.fresh() {
                Some(snapshot) => self.document(doc, &snapshot, req.headers()),
                None => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "discovery documents are not available\n",
                ),
            },
            _ => {
                let mut response = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed: use GET or HEAD\n",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                response
            }
        };
        // The canonical path, whichever alias was asked for.
        self.metrics.request(doc.path(), response.status().as_u16());
        response
    }

    /// The document, or 304 when the client's copy is current. axum drops the body of HEAD
    /// answers after setting Content-Length from it.
    fn document(&self, doc: Kind, snapshot: &Snapshot, headers: &HeaderMap) -> Response {
        let (served, content_type): (&Served, _) = match doc {
            Kind::Discovery => (&snapshot.discovery, JSON),
            Kind::Jwks => (&snapshot.jwks, JWK_SET),
        };
        let current = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|value| etag_matches(value.as_bytes(), served.etag.as_bytes()));
        let mut response = if current {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            // The length of the representation the client holds, not of this empty answer.
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(served.body.len()));
            response
        } else {
            let mut response = Response::new(Body::from(served.body.clone()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, served.etag.clone());
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        response
    }
}

/// If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/"x"` matches our `"x"`.
fn etag_matches(if_none_match: &[u8], etag: &[u8]) -> bool {
    if_none_match.split(|b| *b == b',').any(|candidate| {
        let candidate = candidate.trim_ascii();
        candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == etag
    })
}

async fn not_found(State(public): State<Arc<Public>>) -> Response {
    public
        .metrics
        .request("other", StatusCode::NOT_FOUND.as_u16());
    plain(
        StatusCode::NOT_FOUND,
        "not found: this server serves /.well-known/openid-configuration and /openid/v1/jwks\n",
    )
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, TEXT);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::document::{public_keys, render};
    use std::time::Duration;
    use tower::ServiceExt;

    async fn status(router: &Router, method: &str, path: &str) -> u16 {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(req).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn issuer_paths_are_literal_aliases_of_the_root_paths() {
        let issuer = "https://h.example/:team/*x";
        let s = Duration::from_secs;
        let settings = Settings::new(issuer, s(60), s(600), s(5)).unwrap();
        let store = Arc::new(Store::new(
            s(600),
            tokio_util::sync::CancellationToken::new(),
        ));
        let router = public_router(store.clone(), Default::default(), &settings);
        assert_eq!(
            status(&router, "GET", "/:team/*x/openid/v1/jwks").await,
            503
        );
        let keys = br#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#;
        store.publish(&render(&settings.issuer, &public_keys(keys).unwrap()));
        for path in [
            "/openid/v1/jwks",
            "/.well-known/openid-configuration",
            "/:team/*x/openid/v1/jwks",
            "/:team/*x/.well-known/openid-configuration",
        ] {
            assert_eq!(status(&router, "GET", path).await, 200, "{path}");
            assert_eq!(status(&router, "POST", path).await, 405, "{path}");
        }
        for path in [
            "/other/openid/v1/jwks",
            "/:team/openid/v1/jwks",
            "/:team/*x",
        ] {
            assert_eq!(status(&router, "GET", path).await, 404, "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = b"\"abc\"";
        for header in [
            "\"abc\"",
            "W/\"abc\"",
            "\"x\", \"abc\"",
            " \"x\",W/\"abc\" ",
            "*",
        ] {
            assert!(etag_matches(header.as_bytes(), etag), "{header}");
        }
        for header in ["\"abd\"", "abc", "\"abc", "", "W/abc"] {
            assert!(!etag_matches(header.as_bytes(), etag), "{header}");
        }
    }
}
