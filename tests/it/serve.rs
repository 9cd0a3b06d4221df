//! HTTP-level tests against a running `irsa-webhook serve --service-accounts-file` (no cluster).

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::{
    KeptAlive, SERVICE_ACCOUNTS, Server, peer_cert, request, roots, tls_connect, write_certs,
};

fn pod_review(uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE", "namespace": "team", "name": "",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-7d4b9-", "namespace": "team"},
                "spec": {"serviceAccountName": "app", "containers": [{"name": "web", "image": "nginx"}]},
            },
            "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

/// The review's pod with the answer's patch applied; the patch must be a base64 string (the API
/// server refuses an array of numbers).
fn patched(review: &Value, answer: &Value) -> Value {
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            answer["response"]["patch"]
                .as_str()
                .expect("patch is a string"),
        )
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

fn server() -> Server {
    Server::with_service_accounts(SERVICE_ACCOUNTS, &[])
}

async fn post(server: &Server, h2: bool, body: Vec<u8>) -> (u16, Value) {
    let (status, body) = request(
        server.addr,
        roots(&[&server.ca_pem]),
        h2,
        "POST",
        "/mutate",
        Some("application/json"),
        body,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn admission_review_gets_a_base64_patch_over_h2_and_http1() {
    let server = server();
    for h2 in [true, false] {
        let review = pod_review(if h2 { "uid-h2" } else { "uid-h1" });
        let (_, answer) = post(&server, h2, serde_json::to_vec(&review).unwrap()).await;
        let response = &answer["response"];
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(response["uid"], review["request"]["uid"]);
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let pod = patched(&review, &answer);
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0],
            json!({"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/app"})
        );
        assert_eq!(pod["spec"]["volumes"][0]["name"], "aws-iam-token");
    }
    assert_eq!(
        server.metric("irsa_webhook_admissions_total{decision=\"mutated\"}"),
        2.0
    );
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_message_and_the_server_stays_up() {
    let server = server();
    let valid = serde_json::to_vec(&pod_review("u")).unwrap();
    let mut no_object = pod_review("u");
    no_object["request"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    let mut no_request = pod_review("u");
    no_request.as_object_mut().unwrap().remove("request");
    let mut wrong_kind = pod_review("u");
    wrong_kind["kind"] = json!("Pod");
    let huge = vec![b' '; 4 * 1024 * 1024];
    /// method, path, content type, body, expected status, message prefix
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/mutate",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
            "body is not a JSON AdmissionReview",
        ),
        (
            "POST",
            "/mutate",
            Some("application/json"),
            serde_json::to_vec(&wrong_kind).unwrap(),
            400,
            "kind must be AdmissionReview, got \"Pod\"",
        ),
        (
            "POST",
            "/mutate",
            Some("application/json"),
            serde_json::to_vec(&no_request).unwrap(),
            400,
            "AdmissionReview has no request",
        ),
        (
            "POST",
            "/mutate",
            Some("application/json"),
            serde_json::to_vec(&no_object).unwrap(),
            400,
            "request.object is missing for a Pod CREATE",
        ),
        (
            "POST",
            "/mutate",
            Some("application/json"),
            huge,
            413,
            "request body larger than 3145728 bytes",
        ),
        (
            "POST",
            "/mutate",
            Some("text/plain"),
            valid.clone(),
            415,
            "Content-Type must be application/json",
        ),
        (
            "POST",
            "/mutate",
            None,
            valid.clone(),
            415,
            "Content-Type must be application/json",
        ),
        (
            "GET",
            "/mutate",
            None,
            vec![],
            405,
            "method not allowed: use POST",
        ),
        (
            "POST",
            "/validate",
            Some("application/json"),
            valid.clone(),
            404,
            "not found: the webhook serves POST /mutate",
        ),
    ];
    for (method, path, content_type, body, status, message) in cases {
        let (got, text) = request(
            server.addr,
            roots(&[&server.ca_pem]),
            true,
            method,
            path,
            content_type,
            body,
        )
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&text);
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(text.starts_with(message), "{method} {path}: {text}");
        assert!(!text.contains("\"allowed\""), "never a denial: {text}");
    }
    // Still serving.
    post(&server, true, valid).await;
    assert_eq!(
        server.metric("irsa_webhook_rejected_requests_total{status=\"400\"}"),
        4.0
    );
    assert_eq!(
        server.metric("irsa_webhook_rejected_requests_total{status=\"413\"}"),
        1.0
    );
}

#[tokio::test]
async fn non_pod_requests_are_allowed_untouched() {
    let server = server();
    let mut review = pod_review("u");
    review["request"]["operation"] = json!("UPDATE");
    let (_, answer) = post(&server, true, serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(answer["response"], json!({"uid": "u", "allowed": true}));
    assert_eq!(
        server.metric("irsa_webhook_admissions_total{decision=\"ignored\"}"),
        1.0
    );
}

#[tokio::test]
async fn legacy_tls_versions_are_refused_and_modern_ones_accepted() {
    let server = server();
    // Control: the same hello offering TLS 1.2 gets a ServerHello (handshake record, 22).
    assert_eq!(legacy_client_hello(server.addr, 0x0303).first(), Some(&22));
    for (version, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        let alert = legacy_client_hello(server.addr, version);
        // A fatal alert record (21) carrying protocol_version (70).
        assert_eq!(alert.first(), Some(&21), "{name}: {alert:?}");
        assert_eq!(alert.get(6), Some(&70), "{name}: {alert:?}");
    }
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let stream = tls_connect(server.addr, roots(&[&server.ca_pem]), &[b"h2"], &[version])
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
    }
}

/// Sends a ClientHello that offers only `version` (no supported_versions extension) and returns
/// the server's first bytes.
fn legacy_client_hello(addr: std::net::SocketAddr, version: u16) -> Vec<u8> {
    let [major, minor] = version.to_be_bytes();
    let mut hello = vec![major, minor];
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256 and ECDHE-RSA-AES128-GCM-SHA256 (which rustls has), AES128-SHA.
    hello.extend([0, 6, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x2f]);
    hello.extend([1, 0]); // null compression
    let extensions = [
        &[0x00, 0x0a, 0, 4, 0, 2, 0x00, 0x1d][..], // supported_groups: x25519
        &[0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x03],     // signature_algorithms: ecdsa_secp256r1_sha256
        &[0x00, 0x0b, 0, 2, 1, 0],                 // ec_point_formats: uncompressed
    ]
    .concat();
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1, 0, 0, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![22, major, minor, 0, handshake.len() as u8];
    record.extend(handshake);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&record).unwrap();
    let mut answer = vec![0; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    answer.truncate(n);
    answer
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_is_served_without_failed_requests() {
    // Lay the certificate out as a Kubernetes Secret volume does: tls.crt -> ..data/tls.crt,
    // ..data -> ..v1, and rotate by swapping the ..data symlink atomically.
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(tls.join("..v1")).unwrap();
    let first = write_certs(&tls.join("..v1"));
    std::os::unix::fs::symlink("..v1", tls.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), tls.join(file)).unwrap();
    }
    let sa_file = dir.path().join("sa.yaml");
    std::fs::write(&sa_file, SERVICE_ACCOUNTS).unwrap();
    let server = Server::start(
        dir,
        &[
            "--service-accounts-file".into(),
            sa_file.display().to_string(),
        ],
    );

    std::fs::create_dir_all(tls.join("..v2")).unwrap();
    let second = write_certs(&tls.join("..v2"));
    let trust = || roots(&[&first.ca_cert, &second.ca_cert]);
    let der = |pem: &str| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    let stream = tls_connect(server.addr, trust(), &[b"h2"], rustls::ALL_VERSIONS)
        .await
        .unwrap();
    assert_eq!(peer_cert(&stream), der(&first.tls_cert));

    // Requests on fresh connections keep flowing while the certificate is swapped.
    let body = serde_json::to_vec(&pod_review("rotation")).unwrap();
    let addr = server.addr;
    let load = tokio::spawn({
        let (body, store) = (body.clone(), trust());
        async move {
            for _ in 0..60 {
                let (status, _) = request(
                    addr,
                    store.clone(),
                    true,
                    "POST",
                    "/mutate",
                    Some("application/json"),
                    body.clone(),
                )
                .await
                .expect("no failed request during rotation");
                assert_eq!(status, 200);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::os::unix::fs::symlink("..v2", tls.join("..data_tmp")).unwrap();
    std::fs::rename(tls.join("..data_tmp"), tls.join("..data")).unwrap();
    load.await.unwrap();

    let stream = tls_connect(server.addr, trust(), &[b"h2"], rustls::ALL_VERSIONS)
        .await
        .unwrap();
    assert_eq!(
        peer_cert(&stream),
        der(&second.tls_cert),
        "the next connection gets the new certificate"
    );
    assert_eq!(
        server.metric("irsa_webhook_tls_reloads_total{result=\"ok\"}"),
        1.0
    );
}

#[tokio::test]
async fn health_endpoints_and_graceful_shutdown_finish_in_flight_requests() {
    let mut server = server();
    assert_eq!(
        support::http_get(server.health, "/livez").unwrap(),
        (200, "ok\n".into())
    );
    assert_eq!(
        support::http_get(server.health, "/readyz").unwrap(),
        (200, "ok\n".into())
    );

    // Start a request and hold back the end of its body, then ask the server to stop.
    let body = serde_json::to_vec(&pod_review("in-flight")).unwrap();
    let mut stream = tls_connect(
        server.addr,
        roots(&[&server.ca_pem]),
        &[b"http/1.1"],
        rustls::ALL_VERSIONS,
    )
    .await
    .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    stream.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"in-flight\""), "{answer}");
    let status = wait_exit(&mut server.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// What kube-apiserver needs from a webhook that stops: after SIGTERM it is not ready at once
/// but keeps accepting and answering for the delay (the API server and kube-proxy learn of the
/// stop only through their endpoint watches); every client is asked to move on (HTTP/2 GOAWAY,
/// HTTP/1.1 `Connection: close` on the next answer); after the delay new connections are
/// refused; a kept-alive connection its client leaves idle is never closed under it before the
/// drain ends, since an HTTP/1.1 client reusing a connection as it closes loses that request.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_keeps_serving_through_the_delay_and_moves_every_client_on() {
    const DELAY: Duration = Duration::from_secs(6);
    const DRAIN: Duration = Duration::from_secs(3);
    let mut server = Server::with_service_accounts(
        SERVICE_ACCOUNTS,
        &["--shutdown-delay", "6s", "--shutdown-timeout", "3s"],
    );
    let trust = || roots(&[&server.ca_pem]);
    let review = || serde_json::to_vec(&pod_review("drain")).unwrap();
    let (mut h1, mut h2, mut idle) = (
        KeptAlive::open(server.addr, trust(), false).await.unwrap(),
        KeptAlive::open(server.addr, trust(), true).await.unwrap(),
        KeptAlive::open(server.addr, trust(), false).await.unwrap(),
    );
    for conn in [&mut h1, &mut h2, &mut idle] {
        let (status, headers, _) = conn.post("/mutate", review()).await.unwrap();
        assert_eq!(status, 200);
        assert!(headers.get("connection").is_none(), "{headers:?}");
    }

    let signalled = std::time::Instant::now();
    server.terminate();
    let mut readyz = support::http_get(server.health, "/readyz").unwrap();
    while readyz.0 == 200 && signalled.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
        readyz = support::http_get(server.health, "/readyz").unwrap();
    }
    assert_eq!(readyz, (503, "shutting down\n".into()), "not ready at once");
    assert_eq!(
        support::http_get(server.health, "/livez").unwrap(),
        (200, "ok\n".into()),
        "still alive: the kubelet must not restart a draining webhook"
    );
    assert!(
        h2.closed_within(Duration::from_secs(2)).await,
        "GOAWAY ends an idle HTTP/2 connection"
    );
    let (status, headers, _) = h1.post("/mutate", review()).await.unwrap();
    assert_eq!(status, 200, "a kept-alive connection is still served");
    assert_eq!(headers["connection"], "close", "{headers:?}");
    assert!(h1.closed_within(Duration::from_secs(2)).await);
    let mut late = KeptAlive::open(server.addr, trust(), false)
        .await
        .expect("new connections are accepted during the delay");
    let (status, headers, _) = late.post("/mutate", review()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["connection"], "close");
    assert!(
        signalled.elapsed() < DELAY,
        "the checks above ran within the delay ({:?})",
        signalled.elapsed()
    );
    assert!(
        !idle.is_closed(),
        "an idle connection is left to its client"
    );

    tokio::time::sleep((DELAY + Duration::from_millis(500)).saturating_sub(signalled.elapsed()))
        .await;
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "refused after the delay"
    );
    assert!(
        !idle.is_closed(),
        "still left to its client after the delay"
    );
    assert!(
        idle.closed_within(DRAIN + Duration::from_secs(3)).await,
        "dropped when the drain ends"
    );
    assert!(
        signalled.elapsed() >= DELAY + DRAIN - Duration::from_millis(200),
        "not before the drain ended: {:?}",
        signalled.elapsed()
    );
    let status = wait_exit(&mut server.child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The EKS webhook's own Deployment arguments, with only our ServiceAccounts file (and the
/// test's certificate paths) added.
#[tokio::test]
async fn the_eks_webhook_deployment_arguments_work_unchanged() {
    let server = Server::with_service_accounts(
        SERVICE_ACCOUNTS,
        &[
            "--in-cluster=false",
            "--namespace=default",
            "--service-name=pod-identity-webhook",
            "--annotation-prefix=eks.amazonaws.com",
            "--token-audience=sts.amazonaws.com",
            "--logtostderr",
        ],
    );
    let review = pod_review("uid-reference");
    let (_, answer) = post(&server, true, serde_json::to_vec(&review).unwrap()).await;
    let pod = patched(&review, &answer);
    assert_eq!(
        pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"][1],
        json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"})
    );
}

/// The EKS webhook's `--compose-role-arn`, with the account and partition given as flags.
#[tokio::test]
async fn role_names_become_arns_with_compose_role_arn() {
    let service_accounts = "\
kind: ServiceAccount
metadata: {name: app, namespace: team, annotations: {eks.amazonaws.com/role-arn: ci/deployer}}
";
    let server = Server::with_service_accounts(
        service_accounts,
        &[
            "--compose-role-arn=true",
            "--aws-account-id=111122223333",
            "--aws-partition=aws-cn",
        ],
    );
    let review = pod_review("uid-compose");
    let (_, answer) = post(&server, true, serde_json::to_vec(&review).unwrap()).await;
    let pod = patched(&review, &answer);
    assert_eq!(
        pod["spec"]["containers"][0]["env"][0],
        json!({"name": "AWS_ROLE_ARN", "value": "arn:aws-cn:iam::111122223333:role/ci/deployer"})
    );
    assert_eq!(answer["response"].get("warnings"), None, "{answer}");
}

/// Run as `webhook` (the EKS webhook image's entrypoint), the binary is `serve` with its defaults.
#[test]
fn run_as_webhook_it_serves_with_the_eks_webhook_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("webhook");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_irsa-webhook"), &link).unwrap();
    let version = std::process::Command::new(&link)
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    // Without --in-cluster=false it wants its in-cluster certificate, hence a cluster.
    let no_cluster = std::process::Command::new(&link)
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(!no_cluster.status.success());
    let stderr = String::from_utf8_lossy(&no_cluster.stderr);
    assert!(stderr.contains("no Kubernetes configuration"), "{stderr}");
    // With --in-cluster=false it reads /etc/webhook/certs/tls.{crt,key}, which this machine lacks.
    let no_files = std::process::Command::new(&link)
        .args(["--in-cluster=false", "--service-accounts-file=/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&no_files.stderr);
    assert!(
        stderr.contains("cannot read /etc/webhook/certs/tls.crt: No such file or directory"),
        "{stderr}"
    );
    // Given files and a port, it serves.
    write_certs(dir.path());
    let sa_file = dir.path().join("sa.yaml");
    std::fs::write(&sa_file, SERVICE_ACCOUNTS).unwrap();
    let (port, metrics) = (support::free_port(), support::free_port());
    let mut child = std::process::Command::new(&link)
        .arg("--in-cluster=false")
        .arg(format!(
            "--tls-cert={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--tls-key={}",
            dir.path().join("tls.key").display()
        ))
        .arg(format!("--service-accounts-file={}", sa_file.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--metrics-port={metrics}"))
        .spawn()
        .unwrap();
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        support::http_get(([127, 0, 0, 1], metrics).into(), "/readyz").is_ok_and(|(s, _)| s == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "webhook --in-cluster=false … became ready");
}

/// Start-up errors name the flag or file and say the cause once; connection errors name the
/// API server and the reason; no colour codes off a terminal.
#[test]
fn errors_name_the_file_or_server_and_say_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    write_certs(&ours);
    write_certs(&other);
    let sa_file = dir.path().join("sa.yaml");
    std::fs::write(&sa_file, SERVICE_ACCOUNTS).unwrap();
    let serve = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let missing = serve(&[
        &os("--tls-cert=nope.crt"),
        &os("--tls-key=nope.key"),
        &os("--service-accounts-file"),
        sa_file.as_os_str(),
    ]);
    assert_eq!(
        missing,
        "error: cannot read nope.crt: No such file or directory (os error 2)\n"
    );
    let mismatch = serve(&[
        &os("--tls-cert"),
        ours.join("tls.crt").as_os_str(),
        &os("--tls-key"),
        other.join("tls.key").as_os_str(),
        &os("--service-accounts-file"),
        sa_file.as_os_str(),
    ]);
    assert!(
        mismatch.ends_with(
            "do not form a usable pair: the private key does not belong to the certificate\n"
        ),
        "{mismatch}"
    );
    let kubeconfig = serve(&[
        &os("--tls-cert"),
        ours.join("tls.crt").as_os_str(),
        &os("--tls-key"),
        ours.join("tls.key").as_os_str(),
        &os("--kubeconfig=missing-kubeconfig"),
    ]);
    assert_eq!(
        kubeconfig,
        "error: cannot read --kubeconfig missing-kubeconfig: No such file or directory (os error 2)\n"
    );

    // An API server that refuses connections (nothing listens on 127.0.0.1:1).
    let config = dir.path().join("kubeconfig");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: x}}]\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .arg("serve")
        .arg("--tls-cert")
        .arg(ours.join("tls.crt"))
        .arg("--tls-key")
        .arg(ours.join("tls.key"))
        .arg("--kubeconfig")
        .arg(&config)
        .args(["--bind-address", "127.0.0.1"])
        .args(["--port", &support::free_port().to_string()])
        .args(["--metrics-port", &support::free_port().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("ServiceAccount watch error") {
                break;
            }
        }
        text
    });
    let started = std::time::Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = reader.join().unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("ServiceAccount watch error"))
        .unwrap_or_else(|| panic!("no watch error logged: {log}"));
    assert!(line.contains("api_server=https://127.0.0.1:1/"), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI colour codes off a terminal: {log:?}"
    );
}
