//! HTTP-level tests of `irsa-webhook discovery`: the real binary against a fake API server that
//! the test runs itself (HTTPS with a test CA, bearer-token auth through a kubeconfig), so every
//! answer of the "API server" is under the test's control.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use irsa_webhook::certs;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::free_port;

const ISSUER: &str = "https://oidc.example.com/clusters/a";
const TOKEN: &str = "test-token";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/openid/v1/jwks";
const DISCOVERY_FILE: &str = ".well-known/openid-configuration";
const JWKS_FILE: &str = "openid/v1/jwks";

// ---------------------------------------------------------------------------------------------
// The fake API server.

/// What the fake API server answers for one path.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(value: &Value) -> Self {
        Self {
            status: 200,
            body: serde_json::to_vec(value).unwrap(),
        }
    }
}

#[derive(Clone)]
struct Answers {
    discovery: Answer,
    jwks: Answer,
    delay: Duration,
}

impl Answers {
    /// A healthy API server with `kids` as its RSA keys.
    fn good(kids: &[&str]) -> Self {
        Self {
            discovery: Answer::json(&upstream_discovery(ISSUER)),
            jwks: Answer::json(&json!({ "keys": kids.iter().map(|k| rsa(k)).collect::<Vec<_>>() })),
            delay: Duration::ZERO,
        }
    }
}

fn upstream_discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

/// An RSA public key as the API server publishes it, plus a member we must not echo.
fn rsa(kid: &str) -> Value {
    json!({
        "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode([0xb7; 256]), "e": "AQAB",
        "x5t": "not-published",
    })
}

struct Shared {
    answers: Mutex<Answers>,
    authorized: AtomicUsize,
    unauthorized: AtomicUsize,
}

/// An HTTPS server on 127.0.0.1 playing the API server; stops when dropped.
struct Upstream {
    port: u16,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A CA and a serving certificate for 127.0.0.1.
fn bundle() -> certs::Bundle {
    certs::generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()], 30).unwrap()
}

impl Upstream {
    /// Starts on any free port with `answers`, on the current runtime.
    async fn start(answers: Answers) -> Self {
        Self::start_on(0, answers, &bundle()).await
    }

    /// Starts on `port` (0 for any) serving the certificate of `bundle`.
    async fn start_on(port: u16, answers: Answers, bundle: &certs::Bundle) -> Self {
        let dir = tempfile::tempdir().unwrap();
        bundle.write(dir.path(), true).unwrap();
        let tls = irsa_webhook::serving::tls::ReloadingConfig::load(
            dir.path().join(certs::TLS_CERT),
            dir.path().join(certs::TLS_KEY),
            |_| {},
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            answers: Mutex::new(answers),
            authorized: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
        });
        let router = Router::new().fallback(answer).with_state(shared.clone());
        let stop = CancellationToken::new();
        tokio::spawn(irsa_webhook::serving::server::serve(
            listener,
            Some(Arc::new(tls)),
            router,
            irsa_webhook::serving::server::Limits::default(),
            irsa_webhook::serving::shutdown::Shutdown::with(stop.clone()),
        ));
        Self {
            port,
            ca_pem: bundle.ca_cert.clone(),
            shared,
            stop,
            _dir: dir,
        }
    }

    fn set(&self, answers: Answers) {
        *self.shared.answers.lock().unwrap() = answers;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        shared.unauthorized.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    shared.authorized.fetch_add(1, Ordering::Relaxed);
    let answers = shared.answers.lock().unwrap().clone();
    tokio::time::sleep(answers.delay).await;
    let answer = match uri.path() {
        DISCOVERY => answers.discovery,
        JWKS => answers.jwks,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let status = StatusCode::from_u16(answer.status).unwrap();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The binary under test.

/// `irsa-webhook discovery` as a child process with a kubeconfig for the fake API server;
/// killed on drop.
struct Discovery {
    child: Child,
    public: SocketAddr,
    health: SocketAddr,
    dir: tempfile::TempDir,
}

impl Discovery {
    /// Starts against the API server on `port` trusting `ca_pem`, with short timings that
    /// `args` may override, and waits until it listens.
    async fn start(port: u16, ca_pem: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(port, ca_pem)).unwrap();
        let log = std::fs::File::create(dir.path().join("log.json")).unwrap();
        let (public, health) = (free_port(), free_port());
        let mut all: Vec<&str> = args.to_vec();
        for (flag, value) in [
            ("--refresh-interval", "200ms"),
            ("--fetch-timeout", "1s"),
            ("--max-stale", "1m"),
        ] {
            if !args.contains(&flag) {
                all.extend([flag, value]);
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
            .arg("discovery")
            .args(["--issuer-url", ISSUER])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--bind-address", "127.0.0.1"])
            .args(["--port", &public.to_string()])
            .args(["--metrics-port", &health.to_string()])
            .args(all)
            .env("IRSA_LOG_FORMAT", "json")
            .env("IRSA_LOG_LEVEL", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let mut discovery = Self {
            child,
            public: SocketAddr::from(([127, 0, 0, 1], public)),
            health: SocketAddr::from(([127, 0, 0, 1], health)),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = discovery.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(discovery.dir.path().join("log.json"));
                panic!(
                    "discovery exited with {status}: {}",
                    log.unwrap_or_default()
                );
            }
            if matches!(try_send(discovery.health, "GET", "/livez", &[]).await, Ok(r) if r.status == 200)
            {
                return discovery;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the health listener did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.public, "GET", path, &[]).await
    }

    async fn ready(&self) -> Reply {
        send(self.health, "GET", "/readyz", &[]).await
    }

    async fn wait_ready(&self) {
        let health = self.health;
        eventually("/readyz 200", Duration::from_secs(10), || async move {
            send(health, "GET", "/readyz", &[]).await.status == 200
        })
        .await;
    }

    /// The value of one sample in `/metrics`, 0 when absent.
    async fn metric(&self, sample: &str) -> f64 {
        metric(self.health, sample).await
    }

    /// Waits until the sample exceeds `above`.
    async fn wait_metric(&self, sample: &str, above: f64) {
        let (health, owned) = (self.health, sample.to_owned());
        eventually(sample, Duration::from_secs(10), || {
            let sample = owned.clone();
            async move { metric(health, &sample).await > above }
        })
        .await;
    }

    /// The JSON log lines written so far.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log.json"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubeconfig_yaml(port: u16, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
users:
- name: fake
  user:
    token: {TOKEN}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
",
        ca = STANDARD.encode(ca_pem)
    )
}

fn fetches(result: &str) -> String {
    format!("irsa_discovery_fetches_total{{result=\"{result}\"}}")
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers.

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    try_send(addr, method, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    request(&mut sender, method, path, headers).await
}

async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "oidc.example.com");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = sender.send_request(req.body(Empty::new())?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn metric(health: SocketAddr, sample: &str) -> f64 {
    let reply = send(health, "GET", "/metrics", &[]).await;
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `check` every 50 ms until it holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}

/// Waits until the file at `path` exists and satisfies `check`: files are written right after
/// publishing, so they may trail the HTTP answers briefly.
async fn wait_file(path: PathBuf, check: impl Fn(&[u8]) -> bool) {
    eventually(&path.display().to_string(), Duration::from_secs(10), || {
        std::future::ready(std::fs::read(&path).is_ok_and(|b| check(&b)))
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread")]
async fn serves_both_documents_with_content_types_caching_headers_etag_and_head() {
    let upstream = Upstream::start(Answers::good(&["k1", "k2"])).await;
    let d = Discovery::start(
        upstream.port,
        &upstream.ca_pem,
        &["--refresh-interval", "2s", "--max-stale", "1m"],
    )
    .await;
    d.wait_ready().await;

    let doc = d.get(DISCOVERY).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), "application/json");
    assert_eq!(doc.header("cache-control"), "public, max-age=2");
    assert_eq!(doc.header("x-content-type-options"), "nosniff");
    assert_eq!(
        doc.json(),
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss"],
        })
    );

    let jwks = d.get(JWKS).await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("content-type"), "application/jwk-set+json");
    let keys = jwks.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    let mut published = rsa("k1");
    published.as_object_mut().unwrap().remove("x5t");
    assert_eq!(
        keys[0], published,
        "only public members, never unknown ones"
    );
    assert!(!String::from_utf8_lossy(&jwks.body).contains("x5t"));

    // The issuer has a path: STS asks below it, and a prefix-stripping proxy asks at the root.
    for path in [
        "/clusters/a/openid/v1/jwks",
        "/clusters/a/.well-known/openid-configuration",
    ] {
        let aliased = d.get(path).await;
        assert_eq!(aliased.status, 200, "{path}");
        assert!(
            aliased.body == jwks.body || aliased.body == doc.body,
            "{path}"
        );
    }

    // Strong ETag and conditional GET.
    let etag = jwks.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 20, "strong: {etag}");
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let cached = send(d.public, "GET", JWKS, &[("if-none-match", &inm)]).await;
        assert_eq!(cached.status, 304, "{inm}");
        assert!(cached.body.is_empty());
        assert_eq!(cached.header("etag"), etag);
        assert_eq!(cached.header("cache-control"), "public, max-age=2");
    }
    let changed = send(d.public, "GET", JWKS, &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, jwks.body);
    assert_ne!(doc.header("etag"), etag, "each document has its own tag");

    // HEAD: same headers and length, no body.
    let head = send(d.public, "HEAD", JWKS, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), jwks.body.len().to_string());
    assert_eq!(head.header("etag"), etag);
    assert_eq!(head.header("content-type"), "application/jwk-set+json");

    // Nothing else.
    for path in [
        "/",
        "/openid/v1/jwks/",
        "/.well-known/other",
        "/metrics",
        "/readyz",
    ] {
        let reply = d.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let reply = send(d.public, method, DISCOVERY, &[]).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), "GET, HEAD");
    }

    // The fake API server only answers with the kubeconfig's bearer token: it was used.
    assert!(upstream.shared.authorized.load(Ordering::Relaxed) >= 2);
    assert_eq!(upstream.shared.unauthorized.load(Ordering::Relaxed), 0);

    assert_eq!(d.metric("irsa_discovery_keys").await, 2.0);
    assert!(d.metric(&fetches("ok")).await >= 1.0);
    assert!(
        d.metric("irsa_discovery_last_success_timestamp_seconds")
            .await
            > 1.7e9
    );
    let jwks_304 = "irsa_discovery_requests_total{path=\"/openid/v1/jwks\",status=\"304\"}";
    assert_eq!(d.metric(jwks_304).await, 3.0);
    let other_405 =
        "irsa_discovery_requests_total{path=\"/.well-known/openid-configuration\",status=\"405\"}";
    assert_eq!(d.metric(other_405).await, 5.0);
    assert_eq!(
        d.metric("irsa_discovery_requests_total{path=\"other\",status=\"404\"}")
            .await,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_and_not_ready_while_the_api_server_is_down_then_ready_when_it_answers() {
    // Nothing listens on the port yet: the API server is down at start.
    let (port, bundle) = (free_port(), bundle());
    let d = Discovery::start(port, &bundle.ca_cert, &[]).await;
    let not_ready = d.ready().await;
    assert_eq!(not_ready.status, 503);
    let reason = String::from_utf8_lossy(&not_ready.body).into_owned();
    assert!(
        reason.starts_with("no valid documents fetched yet"),
        "{reason}"
    );
    for path in [DISCOVERY, JWKS] {
        let reply = d.get(path).await;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(reply.header("cache-control"), "no-store");
    }
    d.wait_metric(&fetches("unreachable"), 0.0).await;
    let reason = String::from_utf8_lossy(&d.ready().await.body).into_owned();
    assert!(
        reason.contains("; last error: GET /") && reason.contains(" failed: "),
        "{reason}"
    );
    assert_eq!(d.metric(&fetches("ok")).await, 0.0);

    let _upstream = Upstream::start_on(port, Answers::good(&["k1"]), &bundle).await;
    d.wait_ready().await;
    assert_eq!(d.get(JWKS).await.status, 200);
    assert_eq!(d.get(DISCOVERY).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_answers_never_replace_the_good_documents() {
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let d = Discovery::start(
        upstream.port,
        &upstream.ca_pem,
        &["--fetch-timeout", "300ms"],
    )
    .await;
    d.wait_ready().await;
    let (good_doc, good_jwks) = (d.get(DISCOVERY).await, d.get(JWKS).await);

    let good = Answers::good(&["k1"]);
    let with_jwks = |jwks: Answer| Answers {
        jwks,
        ..good.clone()
    };
    let mut oversized = serde_json::to_vec(&json!({"keys": [rsa("k1")]})).unwrap();
    oversized.resize(1024 * 1024 + 1, b' ');
    let mut private = rsa("leaked");
    private["d"] = json!(URL_SAFE_NO_PAD.encode([7; 256]));
    let cases = [
        (
            "garbage body",
            with_jwks(Answer {
                status: 200,
                body: b"<html>502 Bad Gateway</html>".to_vec(),
            }),
            "not_json",
        ),
        (
            "oversized body",
            with_jwks(Answer {
                status: 200,
                body: oversized,
            }),
            "too_large",
        ),
        (
            "a private key",
            with_jwks(Answer::json(&json!({"keys": [rsa("k1"), private]}))),
            "private_key",
        ),
        (
            "duplicate kids",
            with_jwks(Answer::json(&json!({"keys": [rsa("k1"), rsa("k1")]}))),
            "bad_kid",
        ),
        (
            "an error status",
            with_jwks(Answer {
                status: 500,
                body: b"etcdserver: request timed out".to_vec(),
            }),
            "http_status",
        ),
        (
            "a slow answer",
            Answers {
                delay: Duration::from_secs(2),
                ..good.clone()
            },
            "timeout",
        ),
    ];
    for (what, answers, reason) in cases {
        let before = d.metric(&fetches(reason)).await;
        upstream.set(answers);
        d.wait_metric(&fetches(reason), before).await;
        for (path, good) in [(DISCOVERY, &good_doc), (JWKS, &good_jwks)] {
            let reply = d.get(path).await;
            assert_eq!(reply.status, 200, "{what}: {path}");
            assert_eq!(reply.body, good.body, "{what}: {path}");
            assert_eq!(reply.header("etag"), good.header("etag"), "{what}: {path}");
        }
        assert_eq!(
            d.ready().await.status,
            200,
            "{what}: a bad answer alone is not an outage"
        );
    }
    // Each refusal is logged with its reason, the private key by its kid.
    let log = d.log();
    let refused = |needle: &str| {
        log.iter().any(|l| {
            l["message"] == "API server answer refused; keeping the last good documents"
                && l["level"] == "ERROR"
                && l["error"].as_str().is_some_and(|e| e.contains(needle))
        })
    };
    assert!(refused(
        "keys[1] (kid \"leaked\") carries the private member \"d\""
    ));
    assert!(refused("kid \"k1\" is used by more than one key"));
    assert!(refused("the JWKS is larger than 1048576 bytes"));
    assert!(refused("the JWKS is not a JSON object"));

    // A changed issuer is refused too, and it is an operator's problem: not ready at once.
    upstream.set(Answers {
        discovery: Answer::json(&upstream_discovery(&format!("{ISSUER}/"))),
        ..good.clone()
    });
    let health = d.health;
    eventually(
        "not ready on issuer mismatch",
        Duration::from_secs(10),
        || async move { send(health, "GET", "/readyz", &[]).await.status == 503 },
    )
    .await;
    let reason = String::from_utf8_lossy(&d.ready().await.body).into_owned();
    assert!(reason.contains("only by a trailing slash"), "{reason}");
    assert_eq!(
        d.get(JWKS).await.body,
        good_jwks.body,
        "still the last good copy"
    );

    // Recovery, then a real key rotation is published.
    upstream.set(Answers::good(&["k1", "k2"]));
    d.wait_ready().await;
    let public = d.public;
    eventually("the rotated JWKS", Duration::from_secs(10), || async move {
        send(public, "GET", JWKS, &[]).await.json()["keys"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
    assert_ne!(d.get(JWKS).await.header("etag"), good_jwks.header("etag"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_differing_by_a_trailing_slash_is_never_published() {
    let upstream = Upstream::start(Answers {
        discovery: Answer::json(&upstream_discovery(&format!("{ISSUER}/"))),
        ..Answers::good(&["k1"])
    })
    .await;
    let d = Discovery::start(upstream.port, &upstream.ca_pem, &[]).await;
    d.wait_metric(&fetches("issuer_mismatch"), 0.0).await;
    let ready = d.ready().await;
    assert_eq!(ready.status, 503);
    let expected = format!(
        "the API server's issuer \"{ISSUER}/\" differs from --issuer-url \"{ISSUER}\" only by a \
         trailing slash; STS compares issuers as exact strings, so make them identical"
    );
    assert!(String::from_utf8_lossy(&ready.body).contains(&expected));
    assert_eq!(d.get(DISCOVERY).await.status, 503);
    assert_eq!(d.get(JWKS).await.status, 503);
    let loud = d.log().into_iter().any(|l| {
        l["level"] == "ERROR" && l["reason"] == "issuer_mismatch" && l["error"] == expected.as_str()
    });
    assert!(loud, "an ERROR log line names the mismatch: {:?}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_withdrawn_after_max_stale_and_return_with_the_api_server() {
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let d = Discovery::start(upstream.port, &upstream.ca_pem, &["--max-stale", "1s"]).await;
    d.wait_ready().await;
    upstream.set(Answers {
        jwks: Answer {
            status: 500,
            body: b"unavailable".to_vec(),
        },
        ..Answers::good(&["k1"])
    });
    let public = d.public;
    eventually("503 once stale", Duration::from_secs(10), || async move {
        send(public, "GET", JWKS, &[]).await.status == 503
    })
    .await;
    let ready = d.ready().await;
    assert_eq!(ready.status, 503);
    let reason = String::from_utf8_lossy(&ready.body).into_owned();
    assert!(reason.contains("longer than --max-stale"), "{reason}");
    assert!(
        reason.contains("HTTP 500 Internal Server Error"),
        "{reason}"
    );
    upstream.set(Answers::good(&["k1"]));
    d.wait_ready().await;
    assert_eq!(d.get(JWKS).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_paths_is_refused_and_the_documents_stay_served() {
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let d = Discovery::start(upstream.port, &upstream.ca_pem, &[]).await;
    d.wait_ready().await;
    let before = d.get(JWKS).await;
    let public = d.public;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(public).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                for i in 0..500 {
                    let path = format!("/probe-{w}-{i}/{}", "x".repeat(i % 50));
                    let reply = request(&mut sender, "GET", &path, &[]).await.unwrap();
                    assert_eq!(reply.status, 404, "{path}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let after = d.get(JWKS).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body);
    assert_eq!(d.get(DISCOVERY).await.status, 200);
    assert_eq!(d.ready().await.status, 200);
    let metrics = send(d.health, "GET", "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        !text.contains("probe-"),
        "unknown paths never become labels"
    );
    assert_eq!(
        d.metric("irsa_discovery_requests_total{path=\"other\",status=\"404\"}")
            .await,
        2000.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_dir_receives_both_documents_and_follows_changes() {
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let out = tempfile::tempdir().unwrap();
    let site = out.path().join("site");
    let d = Discovery::start(
        upstream.port,
        &upstream.ca_pem,
        &["--export-dir", site.to_str().unwrap()],
    )
    .await;
    d.wait_ready().await;
    let read = |p: &str| std::fs::read(site.join(p)).unwrap_or_default();
    let (doc, jwks) = (d.get(DISCOVERY).await, d.get(JWKS).await);
    let served = jwks.body.clone();
    wait_file(site.join(JWKS_FILE), |b| b == served).await;
    // The JWKS is written first and the discovery document second, so wait for both.
    wait_file(site.join(DISCOVERY_FILE), |b| b == doc.body).await;

    upstream.set(Answers::good(&["k1", "k2"]));
    let two_keys = |b: &[u8]| {
        serde_json::from_slice::<Value>(b).is_ok_and(|v| v["keys"].as_array().unwrap().len() == 2)
    };
    wait_file(site.join(JWKS_FILE), two_keys).await;
    assert_eq!(read(JWKS_FILE), d.get(JWKS).await.body);
    assert_eq!(read(DISCOVERY_FILE), d.get(DISCOVERY).await.body);
    assert!(
        d.metric("irsa_discovery_exports_total{result=\"ok\"}")
            .await
            >= 2.0
    );
    let names: Vec<_> = std::fs::read_dir(site.join("openid/v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["jwks"], "no temporary files left");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_over_tls_with_a_certificate_and_stops_on_sigterm() {
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let certs_dir = tempfile::tempdir().unwrap();
    let served = bundle();
    served.write(certs_dir.path(), true).unwrap();
    let (cert, key) = (
        certs_dir.path().join(certs::TLS_CERT),
        certs_dir.path().join(certs::TLS_KEY),
    );
    let mut d = Discovery::start(
        upstream.port,
        &upstream.ca_pem,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--shutdown-delay",
            "1s",
            "--shutdown-timeout",
            "2s",
        ],
    )
    .await;
    d.wait_ready().await;

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(served.ca_cert.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(irsa_webhook::serving::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect(d.public).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let reply = request(&mut sender, "GET", JWKS, &[]).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/jwk-set+json");
    // Plain HTTP is not spoken on the TLS port.
    assert!(try_send(d.public, "GET", JWKS, &[]).await.is_err());

    // SIGTERM with that connection kept alive and idle: the server never closes it under its
    // client, so it ends when the drain does (1 s delay + 2 s), and the process exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success(), "clean exit: {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running {:?} after SIGTERM",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "the idle kept-alive connection was left open until the drain ended: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_are_closed_on_the_public_and_health_ports() {
    use tokio::io::AsyncReadExt;
    let upstream = Upstream::start(Answers::good(&["k1"])).await;
    let d = Discovery::start(upstream.port, &upstream.ca_pem, &[]).await;
    d.wait_ready().await;
    let connected = Instant::now();
    let mut idle = Vec::new();
    for addr in [d.public, d.health] {
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    // The documents are still served meanwhile.
    assert_eq!(d.get(JWKS).await.status, 200);
    for stream in &mut idle {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed by the server: {read:?}"
        );
    }
    let took = connected.elapsed();
    assert!(
        took >= Duration::from_secs(9),
        "not before the first-request deadline: {took:?}"
    );
    assert_eq!(d.get(JWKS).await.status, 200);
}
