//! Publishing the issuer without serving it from the API server's answers: keys from the API
//! server's own key files (compared with what a real kube-apiserver publishes for the same
//! files), `--once` for pipelines, S3 through moto's S3, and the public self-check that reports
//! a publication that drifted.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Cluster, ClusterOptions, block_on};
use support::issuer::PublicIssuer;
use support::sts::{Moto, venv};

/// Keys in every form kube-apiserver reads, beside the cluster's own signing key.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for command in [
            "ecparam -name prime256v1 -genkey -out ec256.key",
            "ecparam -name secp384r1 -genkey -noout -out ec384.key",
            "req -new -x509 -key ec384.key -subj /CN=irsa -days 2 -out ec384.crt",
            "ecparam -name secp521r1 -genkey -noout -out ec521.key",
            "genrsa -out rsa.key 2048",
            "rsa -in rsa.key -pubout -out rsa.pub",
            "genrsa -traditional -out rsa2.key 2048",
        ] {
            let status = Command::new("openssl")
                .args(command.split(' '))
                .current_dir(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {command}");
        }
        Self { dir }
    }

    /// Every form kube-apiserver takes: EC P-256 private (SEC1) after its EC PARAMETERS block,
    /// a P-384 certificate, P-521 private (SEC1), RSA public (PKIX), RSA private (PKCS#1); the
    /// cluster's own signing key is RSA in PKCS#8. (It takes neither PKCS#1 public keys nor
    /// PKCS#8 EC keys, which `--key-file` also reads.)
    fn files(&self) -> Vec<PathBuf> {
        ["ec256.key", "ec384.crt", "ec521.key", "rsa.pub", "rsa2.key"]
            .iter()
            .map(|f| self.dir.path().join(f))
            .collect()
    }
}

struct Setup {
    cluster: Cluster,
    keys: Keys,
}

fn setup() -> Option<&'static Setup> {
    if support::cluster::skipped_on_own_cluster(
        "discovery_publish",
        "it starts kube-apiserver with key files of its own",
    ) {
        return None;
    }
    static SETUP: OnceLock<Setup> = OnceLock::new();
    Some(SETUP.get_or_init(|| {
        let keys = Keys::make();
        let cluster = Cluster::start(ClusterOptions {
            apiserver_args: keys
                .files()
                .iter()
                .map(|f| format!("--service-account-key-file={}", f.display()))
                .collect(),
            ..Default::default()
        });
        Setup { cluster, keys }
    }))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The keys of a JWKS by kid.
fn by_kid(jwks: &Value) -> std::collections::BTreeMap<String, Value> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap().to_owned(), k.clone()))
        .collect()
}

fn key_file_args(setup: &Setup) -> String {
    let mut files = vec![setup.cluster.dir.join("pki/sa.key")];
    files.extend(setup.keys.files());
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn key_files_publish_exactly_what_kube_apiserver_publishes_for_them() {
    let Some(setup) = setup() else { return };
    let (api_jwks, token) = block_on(async {
        let client = setup.cluster.client().await;
        let request = http::Request::get("/openid/v1/jwks")
            .body(Vec::new())
            .unwrap();
        let jwks: Value =
            serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        let account = serde_json::from_value(json!({"metadata": {"name": "publisher"}})).unwrap();
        let _ = accounts.create(&Default::default(), &account).await;
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 600}});
        let request =
            http::Request::post("/api/v1/namespaces/default/serviceaccounts/publisher/token")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
        let answer: Value =
            serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
        (jwks, answer["status"]["token"].as_str().unwrap().to_owned())
    });
    let out = tempfile::tempdir().unwrap();
    let files = key_file_args(setup);
    let mut once = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"));
    once.args([
        "discovery",
        "--issuer-url",
        &setup.cluster.issuer,
        "--key-file",
        &files,
        "--once",
    ])
    .arg("--export-dir")
    .arg(out.path())
    .env_remove("KUBECONFIG");
    support::run(once, None).unwrap_or_else(|e| panic!("{e}"));
    let ours = read_json(&out.path().join("openid/v1/jwks"));
    assert_eq!(
        by_kid(&ours),
        by_kid(&api_jwks),
        "ours:\n{ours:#}\nkube-apiserver's:\n{api_jwks:#}"
    );
    assert_eq!(ours["keys"].as_array().unwrap().len(), 6);
    let discovery = read_json(&out.path().join(".well-known/openid-configuration"));
    assert_eq!(discovery["issuer"], setup.cluster.issuer.as_str());
    // A token kube-apiserver minted verifies with our key set, as STS would verify it.
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(ours).unwrap();
    let claims = support::tokens::verify(&token, &jwks, &setup.cluster.issuer, "sts.amazonaws.com");
    assert_eq!(claims["sub"], "system:serviceaccount:default:publisher");
}

#[test]
fn once_publishes_nothing_when_a_key_file_is_bad() {
    let out = tempfile::tempdir().unwrap();
    let bad = out.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let site = out.path().join("site");
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args([
            "discovery",
            "--issuer-url",
            "https://issuer.example",
            "--once",
            "--key-file",
        ])
        .arg(&bad)
        .arg("--export-dir")
        .arg(&site)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing published") && stderr.contains("bad.pem"),
        "{stderr}"
    );
    assert!(!site.join("openid/v1/jwks").exists());
    assert!(!site.join(".well-known/openid-configuration").exists());
}

/// moto's S3, verifying every signature, and the environment that points a client at it.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start_verifying(&venv()))
}

fn s3_env(moto: &Moto) -> Vec<(&'static str, String)> {
    let [id, secret] = moto.credentials();
    vec![
        (id.0, id.1.to_owned()),
        (secret.0, secret.1.to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL_S3", moto.endpoint.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn once_to_s3(moto: &Moto, key_files: &str, target: &str) -> Output {
    once_to_s3_with(moto, key_files, target, &[])
}

/// [`once_to_s3`] with `env` overriding the client's environment.
fn once_to_s3_with(moto: &Moto, key_files: &str, target: &str, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args([
            "discovery",
            "--issuer-url",
            "https://bucket-a.s3.us-east-1.amazonaws.com/clusters/a",
        ])
        .args([
            "--once",
            "--s3-path-style",
            "--refresh-interval",
            "5m",
            "--key-file",
            key_files,
        ])
        .args(["--export-s3", target])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(s3_env(moto).iter().map(|(k, v)| (*k, v.as_str())))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn head(moto: &Moto, key: &str) -> Value {
    moto.admin(&["s3api", "head-object", "--bucket", "bucket-a", "--key", key])
}

#[test]
fn s3_export_writes_both_documents_only_when_they_change() {
    let moto = moto();
    moto.admin(&["s3api", "create-bucket", "--bucket", "bucket-a"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/discovery/testdata");
    let rsa = fixtures.join("rsa-pkix.pub").display().to_string();
    let target = "s3://bucket-a/clusters/a";
    let output = once_to_s3(moto, &rsa, target);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let jwks_key = "clusters/a/openid/v1/jwks";
    let discovery_key = "clusters/a/.well-known/openid-configuration";
    for key in [jwks_key, discovery_key] {
        let meta = head(moto, key);
        assert_eq!(meta["ContentType"], "application/json", "{key}: {meta}");
        assert_eq!(meta["CacheControl"], "public, max-age=300", "{key}: {meta}");
    }
    let first = (
        head(moto, jwks_key)["ETag"].clone(),
        head(moto, jwks_key)["LastModified"].clone(),
    );

    // Nothing changed: nothing rewritten.
    std::thread::sleep(Duration::from_millis(1100));
    let output = once_to_s3(moto, &rsa, target);
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("already current"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(head(moto, jwks_key)["LastModified"], first.1);

    // A rotation: a second key file, rewritten.
    let both = format!("{rsa},{}", fixtures.join("ec384.pub").display());
    assert!(once_to_s3(moto, &both, target).status.success());
    assert_ne!(head(moto, jwks_key)["ETag"], first.0);

    // A failing fetch publishes nothing and an unusable bucket is named; the objects stay.
    let bad = once_to_s3(moto, "/nonexistent.pem", target);
    assert!(!bad.status.success());
    let missing = once_to_s3(moto, &rsa, "s3://no-such-bucket-x");
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("export to s3://no-such-bucket-x") && stderr.contains("no-such-bucket-x"),
        "{stderr}"
    );
    assert_ne!(
        head(moto, jwks_key)["ETag"],
        first.0,
        "the rotated set is still there"
    );

    // Keys that need encoding are signed as sent: moto recomputes every signature.
    let odd = once_to_s3(moto, &rsa, "s3://bucket-a/team a+b/é~");
    assert!(
        odd.status.success(),
        "{}",
        String::from_utf8_lossy(&odd.stderr)
    );
    let meta = head(moto, "team a+b/é~/openid/v1/jwks");
    assert_eq!(meta["ContentType"], "application/json", "{meta}");

    // A wrong secret is refused by the signature check and named as such.
    let forged = once_to_s3_with(moto, &rsa, target, &[("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert!(!forged.status.success());
    let stderr = String::from_utf8_lossy(&forged.stderr);
    assert!(
        stderr.contains("s3:GetObject") && stderr.contains("SignatureDoesNotMatch"),
        "{stderr}"
    );
}

/// A discovery server publishing `key_files` for `issuer`, its public self-check on, and its
/// health address.
fn serve_with_check(
    issuer: &PublicIssuer,
    key_file: &Path,
    extra: &[&str],
) -> (support::cluster::Guarded, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &issuer.ca_pem).unwrap();
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut args: Vec<String> = vec![
        "discovery".into(),
        format!("--issuer-url={}", issuer.url),
        format!("--key-file={}", key_file.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--port={}", support::free_port()),
        format!("--metrics-port={}", health.port()),
        "--public-check-interval=300ms".into(),
        format!("--public-check-ca-file={}", ca.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let process = support::cluster::Guarded::spawn(
        Path::new(env!("CARGO_BIN_EXE_irsa-webhook")),
        &args,
        &dir.join("discovery.log"),
        Some(&dir),
    );
    (process, health)
}

/// Polls `/readyz` until `done` holds for (status, body); panics after 20 s.
fn wait_readyz(health: std::net::SocketAddr, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let started = std::time::Instant::now();
    loop {
        if let Ok((status, body)) = support::http_get(health, "/readyz") {
            if done(status, &body) {
                return (status, body);
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "last /readyz: {status} {body}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_public_check_reports_a_publication_that_drifted() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/discovery/testdata");
    let key = fixtures.join("rsa-pkix.pub");
    // What we publish, rendered once, is what the public endpoint serves at first.
    let out = tempfile::tempdir().unwrap();
    let issuer = PublicIssuer::start();
    let rendered = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args([
            "discovery",
            "--issuer-url",
            &issuer.url,
            "--once",
            "--key-file",
        ])
        .arg(&key)
        .arg("--export-dir")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let good_jwks = std::fs::read(out.path().join("openid/v1/jwks")).unwrap();
    issuer.set(|s| {
        s.discovery = std::fs::read(out.path().join(".well-known/openid-configuration")).unwrap();
        s.jwks = good_jwks.clone();
    });
    let (_server, health) = serve_with_check(&issuer, &key, &[]);
    let (status, body) = wait_readyz(health, |status, _| status == 200);
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // The public copy goes stale: a note, still ready.
    let stale = json!({"keys": [{"kty": "RSA", "kid": "retired", "n": "AQAB", "e": "AQAB"}]});
    issuer.set(|s| s.jwks = serde_json::to_vec(&stale).unwrap());
    let (status, body) = wait_readyz(health, |_, body| body.contains("public check"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("lacks keys") && body.contains("stale after a key rotation"),
        "{body}"
    );
    let (_, metrics) = support::http_get(health, "/metrics").unwrap();
    assert!(
        metrics.contains("irsa_discovery_public_checks_total{result=\"differs\"}"),
        "{metrics}"
    );

    // Fixed: the note goes away.
    issuer.set(|s| s.jwks = good_jwks.clone());
    wait_readyz(health, |status, body| status == 200 && body == "ok\n");

    // Required, and the public endpoint answers with another issuer: not ready.
    let (_required, health) = serve_with_check(&issuer, &key, &["--public-check-required"]);
    wait_readyz(health, |status, _| status == 200);
    issuer.set(|s| {
        let mut doc: Value = serde_json::from_slice(&s.discovery).unwrap();
        doc["issuer"] = json!("https://irsa-oidc-1.example.ts.net");
        s.discovery = serde_json::to_vec(&doc).unwrap();
    });
    let (status, body) = wait_readyz(health, |status, _| status == 503);
    assert!(
        body.contains("issuer is \"https://irsa-oidc-1.example.ts.net\" there"),
        "{status} {body}"
    );
}

#[test]
fn a_failing_s3_export_is_a_note_on_readyz_and_is_retried_until_it_works() {
    let moto = moto();
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/discovery/testdata/rsa-pkix.pub");
    let dir = tempfile::tempdir().unwrap().keep();
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut args: Vec<String> = s3_env(moto)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    args.extend([
        env!("CARGO_BIN_EXE_irsa-webhook").to_owned(),
        "discovery".into(),
        "--issuer-url=https://bucket-late.s3.us-east-1.amazonaws.com".into(),
        format!("--key-file={}", key.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--port={}", support::free_port()),
        format!("--metrics-port={}", health.port()),
        "--refresh-interval=2s".into(),
        "--export-s3=s3://bucket-late".into(),
        "--s3-path-style".into(),
    ]);
    let _server = support::cluster::Guarded::spawn(
        Path::new("/usr/bin/env"),
        &args,
        &dir.join("discovery.log"),
        Some(&dir),
    );
    let (status, body) = wait_readyz(health, |_, body| {
        body.contains("export to s3://bucket-late")
    });
    assert_eq!(
        status, 200,
        "an export failure is a note, the documents are still served: {body}"
    );
    assert!(
        body.contains("NoSuchBucket") || body.contains("does not exist"),
        "{body}"
    );
    moto.admin(&["s3api", "create-bucket", "--bucket", "bucket-late"]);
    wait_readyz(health, |status, body| status == 200 && body == "ok\n");
    let meta = moto.admin(&[
        "s3api",
        "head-object",
        "--bucket",
        "bucket-late",
        "--key",
        "openid/v1/jwks",
    ]);
    assert_eq!(meta["ContentType"], "application/json");
    let (_, metrics) = support::http_get(health, "/metrics").unwrap();
    for sample in [
        "irsa_discovery_exports_total{result=\"error\"}",
        "irsa_discovery_exports_total{result=\"ok\"} 1",
    ] {
        assert!(metrics.contains(sample), "{sample} missing:\n{metrics}");
    }
}

/// A discovery replica campaigning for `lease` as `identity`.
struct Replica {
    child: std::process::Child,
    health: std::net::SocketAddr,
    leader_file: PathBuf,
    site: PathBuf,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(setup: &Setup, lease: &str, identity: &str, duration: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/discovery/testdata/rsa-pkix.pub");
        let health = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
        let (leader_file, site) = (dir.path().join("leader"), dir.path().join("site"));
        let child = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
            .arg("discovery")
            .arg(format!("--issuer-url={}", setup.cluster.issuer))
            .arg(format!(
                "--kubeconfig={}",
                setup.cluster.kubeconfig.display()
            ))
            .arg(format!("--key-file={}", key.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--refresh-interval=1s",
                "--leader-elect",
            ])
            .arg(format!("--port={}", support::free_port()))
            .arg(format!("--metrics-port={}", health.port()))
            .arg(format!("--lease-name={lease}"))
            .arg("--lease-namespace=default")
            .arg(format!("--lease-duration={duration}"))
            .arg(format!("--leader-identity={identity}"))
            .arg(format!("--leader-file={}", leader_file.display()))
            .arg(format!("--export-dir={}", site.display()))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            health,
            leader_file,
            site,
            _dir: dir,
        }
    }

    fn leads(&self) -> bool {
        self.leader_file.exists()
    }

    fn exported(&self) -> bool {
        self.site.join("openid/v1/jwks").exists()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done`, panicking with `what` after `limit`; returns how long it took.
fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn one_replica_leads_and_a_standby_takes_over_when_it_dies_or_leaves() {
    let Some(setup) = setup() else { return };
    let a = Replica::start(setup, "discovery-ha", "replica-a", "2s");
    wait_for("replica-a to lead", Duration::from_secs(20), || a.leads());
    let b = Replica::start(setup, "discovery-ha", "replica-b", "2s");
    wait_readyz(b.health, |_, body| {
        body.contains("standby: Lease default/discovery-ha is held by replica-a")
    });
    wait_for("the leader to export", Duration::from_secs(10), || {
        a.exported()
    });
    let (_, leader_ready) = wait_readyz(a.health, |status, _| status == 200);
    assert_eq!(leader_ready, "ok\n");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !b.leads() && !b.exported(),
        "a standby neither leads nor exports"
    );

    // The leader dies without a word: the standby takes over once the Lease has not been
    // renewed for its duration.
    drop(a);
    let took = wait_for("replica-b to take over", Duration::from_secs(15), || {
        b.leads()
    });
    assert!(
        took >= Duration::from_millis(1000),
        "not before the Lease expired: {took:?}"
    );
    wait_for("the new leader to export", Duration::from_secs(10), || {
        b.exported()
    });
    wait_readyz(b.health, |status, body| status == 200 && body == "ok\n");

    // A leader that stops cleanly releases the Lease: a standby with a long Lease takes over
    // well before it would expire.
    let c = Replica::start(setup, "discovery-release", "replica-c", "30s");
    wait_for("replica-c to lead", Duration::from_secs(20), || c.leads());
    let d = Replica::start(setup, "discovery-release", "replica-d", "30s");
    wait_readyz(d.health, |_, body| body.contains("held by replica-c"));
    let status = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        "replica-c to remove its leader file",
        Duration::from_secs(5),
        || !c.leads(),
    );
    let took = wait_for("replica-d to take over", Duration::from_secs(20), || {
        d.leads()
    });
    assert!(
        took < Duration::from_secs(15),
        "released, not expired: {took:?}"
    );
}
