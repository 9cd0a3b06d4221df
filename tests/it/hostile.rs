//! A running `serve` under attack: oversized answers, stalled and slow bodies, idle and surplus
//! connections, early answers over HTTP/2 (our client, curl and Go's), a client that hangs up,
//! and SIGTERM with a closed log pipe. Each asserts the server closes or answers what it
//! should within its documented limits and keeps serving a legitimate client.

use crate::support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::{SERVICE_ACCOUNTS, Server, request, roots, tls_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's documented limits (README, "Security"), with room for a loaded machine.
const FIRST_REQUEST: Duration = Duration::from_secs(10);
const BODY_DEADLINE: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(8);
const MAX_BODY: usize = 3 * 1024 * 1024;

fn review(spec: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "team",
            "object": {"metadata": {"name": "p"}, "spec": spec},
        }
    }))
    .unwrap()
}

fn legit() -> Vec<u8> {
    review(json!({"serviceAccountName": "app", "containers": [{"name": "web"}]}))
}

/// POSTs `body` as JSON to `/mutate` over HTTP/2 on a fresh connection.
async fn post(server: &Server, body: Vec<u8>) -> std::io::Result<(u16, Bytes)> {
    let roots = roots(&[&server.ca_pem]);
    let json = Some("application/json");
    request(server.addr, roots, true, "POST", "/mutate", json, body).await
}

/// A legitimate review on a fresh connection gets a patch.
async fn assert_serving(server: &Server) {
    let (status, body) = post(server, legit())
        .await
        .expect("a legitimate client is served");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
}

/// A TLS connection to `server` offering `alpn`.
async fn connect(
    server: &Server,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect(
        server.addr,
        roots(&[&server.ca_pem]),
        alpn,
        rustls::ALL_VERSIONS,
    )
    .await
    .expect("TLS connection to the server")
}

/// Waits until the peer closes `stream` (EOF or reset), at most `limit`; returns how long it took.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_empty_containers_get_a_small_unpatched_answer() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    for list in ["containers", "initContainers"] {
        let empty = vec!["{}"; 1_000_000].join(",");
        let body = review(json!({"serviceAccountName": "app"}));
        let body = String::from_utf8(body).unwrap().replace(
            r#""serviceAccountName":"app""#,
            &format!(r#""serviceAccountName":"app","{list}":[{empty}]"#),
        );
        assert!(body.len() < MAX_BODY, "{}", body.len());
        let (status, answer) = post(&server, body.clone().into_bytes()).await.unwrap();
        assert_eq!(status, 200);
        assert!(answer.len() < 4096, "answer of {} bytes", answer.len());
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none());
        assert_eq!(
            answer["response"]["warnings"][0],
            "the pod has more than 256 containers and init containers, beyond what the webhook patches: AWS credentials not injected"
        );
    }
    assert_eq!(
        server.metric("irsa_webhook_admissions_total{decision=\"too_large\"}"),
        2.0
    );
    assert_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_are_closed_after_the_first_request_deadline() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    let mut idle = Vec::new();
    for alpn in [&[b"h2" as &[u8]][..], &[b"http/1.1"], &[]] {
        for _ in 0..3 {
            let connected = Instant::now();
            idle.push((connected, connect(&server, alpn).await));
        }
    }
    // An HTTP/2 connection that completes its preface and SETTINGS but sends no request.
    let h2_started = Instant::now();
    let stream = connect(&server, &[b"h2"]).await;
    let (_sender, h2) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
    let h2 = tokio::spawn(h2);
    assert_serving(&server).await;
    for (connected, stream) in &mut idle {
        closed_within(stream, FIRST_REQUEST + SLACK).await;
        let took = connected.elapsed();
        assert!(
            took >= FIRST_REQUEST - Duration::from_secs(1),
            "closed too early: {took:?}"
        );
    }
    tokio::time::timeout(FIRST_REQUEST + SLACK, h2)
        .await
        .expect("the idle HTTP/2 connection is closed (GOAWAY)")
        .unwrap()
        .ok();
    assert!(h2_started.elapsed() >= FIRST_REQUEST - Duration::from_secs(2));
    assert_serving(&server).await;
}

/// Writes an HTTP/1.1 POST head with `content_length`, then `sent` bytes of body.
async fn http1_post(
    addr: SocketAddr,
    ca: &str,
    content_length: usize,
    sent: usize,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut stream = tls_connect(addr, roots(&[ca]), &[b"http/1.1"], rustls::ALL_VERSIONS)
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

async fn read_to_end<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_and_slow_bodies_get_408_within_the_body_deadline() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    let started = Instant::now();
    // Stalled: all but the last byte of a 3 MiB body, several at once.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(http1_post(server.addr, &server.ca_pem, MAX_BODY, MAX_BODY - 1).await);
    }
    // Slow: one byte per second.
    let mut slow = http1_post(server.addr, &server.ca_pem, 100_000, 1).await;
    let drip = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if slow.write_all(b" ").await.is_err() || slow.flush().await.is_err() {
                break;
            }
        }
        read_to_end(&mut slow, Duration::from_secs(1)).await
    });
    // HTTP/2: a stream whose body never ends.
    let h2 = {
        let stream = connect(&server, &[b"h2"]).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = StreamBody::new(tokio_stream_from(rx));
        let request = hyper::Request::post("https://localhost/mutate")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = tokio::time::timeout(BODY_DEADLINE + SLACK, sender.send_request(request))
            .await
            .expect("an answer before the stream ends")
            .unwrap();
        let status = response.status().as_u16();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        drop(tx);
        (status, String::from_utf8_lossy(&text).into_owned())
    };
    assert_eq!(
        h2,
        (408, "request body not received within 10s\n".to_owned())
    );
    assert_serving(&server).await;
    for mut stream in stalled {
        let text = read_to_end(&mut stream, BODY_DEADLINE + SLACK).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            text.ends_with("request body not received within 10s\n"),
            "{text}"
        );
    }
    let text = drip.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < BODY_DEADLINE + SLACK);
    assert_eq!(
        server.metric("irsa_webhook_rejected_requests_total{status=\"408\"}"),
        6.0
    );
    assert_serving(&server).await;
}

/// A channel as a body stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_body_is_counted_as_gone_not_too_large() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    let stream = http1_post(server.addr, &server.ca_pem, 100_000, 1000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    for _ in 0..50 {
        if server.metric("irsa_webhook_rejected_requests_total{status=\"499\"}") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.metric("irsa_webhook_rejected_requests_total{status=\"499\"}"),
        1.0
    );
    assert_eq!(
        server.metric("irsa_webhook_rejected_requests_total{status=\"413\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_unused_connections_make_room_for_new_ones() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    let mut idle = Vec::new();
    for _ in 0..300 {
        // Beyond the cap, unused connections are evicted, so new ones complete.
        idle.push(connect(&server, &[b"http/1.1"]).await);
    }
    let started = Instant::now();
    assert_serving(&server).await;
    assert!(
        started.elapsed() < FIRST_REQUEST,
        "served without waiting for a deadline"
    );
    // The oldest were closed to make room.
    let took = closed_within(&mut idle[0], Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2));
}

/// Every early answer, with the body still being sent, as `client` receives it.
async fn early_answers(
    server: &Server,
    client: impl AsyncFn(&str, &str, Option<&str>, usize) -> String,
) {
    let cases = [
        (
            "POST",
            "/mutate",
            Some("text/plain"),
            1 << 20,
            "415 Content-Type must be application/json\n",
        ),
        (
            "POST",
            "/mutate",
            Some("application/json"),
            4 << 20,
            "413 request body larger than 3145728 bytes\n",
        ),
        (
            "POST",
            "/validate",
            Some("application/json"),
            1 << 20,
            "404 not found: the webhook serves POST /mutate\n",
        ),
        (
            "PUT",
            "/mutate",
            Some("application/json"),
            1 << 20,
            "405 method not allowed: use POST\n",
        ),
    ];
    for (method, path, content_type, size, expected) in cases {
        for attempt in 0..5 {
            let got = client(method, path, content_type, size).await;
            assert_eq!(got, expected, "{method} {path} attempt {attempt}");
        }
    }
    assert_serving(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn early_answers_reach_http2_clients_hyper_curl_and_go() {
    let server = Server::with_service_accounts(SERVICE_ACCOUNTS, &[]);
    let ca_file = server.dir.path().join("tls").join("ca.crt");
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr.port());
    // hyper's client.
    early_answers(
        &server,
        async |method: &str, path: &str, content_type: Option<&str>, size: usize| {
            let (status, body) = request(
                server.addr,
                roots(&[&server.ca_pem]),
                true,
                method,
                path,
                content_type,
                vec![b' '; size],
            )
            .await
            .unwrap();
            format!("{status} {}", String::from_utf8_lossy(&body))
        },
    )
    .await;
    // curl (nghttp2).
    let body_file = server.dir.path().join("body");
    early_answers(
        &server,
        async |method: &str, path: &str, content_type: Option<&str>, size: usize| {
            std::fs::write(&body_file, vec![b' '; size]).unwrap();
            let out = Command::new("curl")
                .args(["-sS", "--http2", "--max-time", "20", "-X", method])
                .arg("--cacert")
                .arg(&ca_file)
                .args([
                    "--resolve",
                    &format!("localhost:{}:{}", server.addr.port(), server.addr.ip()),
                ])
                .args([
                    "-H",
                    &format!("Content-Type: {}", content_type.unwrap_or("")),
                ])
                .arg("--data-binary")
                .arg(format!("@{}", body_file.display()))
                .args(["-w", "%{http_code} %{http_version}", "-o", "-"])
                .arg(url(path))
                .output()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // Body first, then "status version": put it in "status body" order.
            let (body, trailer) = text
                .rsplit_once('\n')
                .map(|(b, t)| (format!("{b}\n"), t.to_owned()))
                .unwrap_or_default();
            let (status, version) = trailer.split_once(' ').unwrap_or_default();
            assert_eq!(
                version,
                "2",
                "curl spoke HTTP/{version}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            format!("{status} {body}")
        },
    )
    .await;
    // Go's net/http (the client kube-apiserver uses).
    let go = go_post_client();
    early_answers(
        &server,
        async |method: &str, path: &str, content_type: Option<&str>, size: usize| {
            let out = Command::new(&go)
                .arg("-ca")
                .arg(&ca_file)
                .args([
                    "-method",
                    method,
                    "-type",
                    content_type.unwrap_or(""),
                    "-size",
                    &size.to_string(),
                ])
                .arg(format!("https://{}{path}", server.addr))
                .output()
                .expect("the Go client runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        },
    )
    .await;
}

/// Builds tests/go/post (Go's HTTP/2 client) once per target directory.
fn go_post_client() -> std::path::PathBuf {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-post");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/post");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&source)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("go is installed (scripts/test.sh requires it)");
    assert!(status.success(), "go build tests/go/post failed");
    out
}

#[test]
fn sigterm_stops_the_server_when_its_log_pipe_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    support::write_certs(dir.path());
    let sa_file = dir.path().join("sa.yaml");
    std::fs::write(&sa_file, SERVICE_ACCOUNTS).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .arg("serve")
        .args([
            "--bind-address",
            "127.0.0.1",
            "--port",
            &support::free_port().to_string(),
        ])
        .args(["--metrics-port", &support::free_port().to_string()])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--service-accounts-file")
        .arg(&sa_file)
        .args(["--shutdown-timeout", "3s", "--log-level", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 64];
    let n = stderr.read(&mut first).unwrap();
    assert!(n > 0, "the server logs");
    drop(stderr); // like `serve 2>&1 | head -1`
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a closed log pipe does not stop the server"
    );
    let kill = |signal: &str| {
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-TERM").success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGTERM ignored"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
