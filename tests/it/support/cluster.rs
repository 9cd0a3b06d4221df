//! A real control plane for end-to-end tests: etcd and kube-apiserver built from the Go module
//! proxy by `tests/cluster/install.sh`, started on free loopback ports.
//!
//! Each process runs under a tiny shell guard reading our stdin pipe: when the test process
//! exits (normally or after a panic) the pipe closes and the guard stops the process and removes
//! the data directory, so nothing outlives the tests even when the cluster lives in a static.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Where the control-plane binaries are: `$IRSA_BIN_DIR`, else what `install.sh` prints.
pub fn bin_dir() -> PathBuf {
    super::installed(
        "IRSA_BIN_DIR",
        "tests/cluster/install.sh",
        "the end-to-end tests need Go and the Go module proxy to build kube-apiserver and etcd \
         (see tests/cluster/README.md)",
    )
}

/// Whether the tests run against your own cluster (`$IRSA_E2E_KUBECONFIG`), where `test` cannot
/// run because of `why`: then it is skipped, which must have been asked for with
/// `IRSA_E2E_ALLOW_SKIPS=1`. Without it this panics, so that a skip never counts as a pass.
pub fn skipped_on_own_cluster(test: &str, why: &str) -> bool {
    if std::env::var_os("IRSA_E2E_KUBECONFIG").is_none() {
        return false;
    }
    assert!(
        std::env::var_os("IRSA_E2E_ALLOW_SKIPS").is_some(),
        "{test} cannot run against your own cluster ($IRSA_E2E_KUBECONFIG): {why}; set \
         IRSA_E2E_ALLOW_SKIPS=1 to skip it knowingly, or unset IRSA_E2E_KUBECONFIG"
    );
    eprintln!("SKIPPED {test}: {why}");
    true
}

/// A process that stops when dropped or when the test process goes away.
pub struct Guarded {
    child: Child,
    stdin: Option<ChildStdin>,
}

const GUARD: &str = r#"
log=$1; shift; cleanup=$1; shift
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
read -r _ || true
# SIGKILL: these are throwaway processes, and kube-apiserver's graceful stop waits up to 60 s
# for open watches.
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
[ -n "$cleanup" ] && rm -rf "$cleanup"
exit 0
"#;

impl Guarded {
    /// Starts `program args` logging to `log`; `cleanup` is removed after it stops.
    pub fn spawn(program: &Path, args: &[String], log: &Path, cleanup: Option<&Path>) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(log)
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Options of a control plane.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--service-account-issuer`; defaults to the API server's own https URL.
    pub issuer: Option<String>,
    /// `--api-audiences`, the audiences the API server itself accepts; defaults to the issuer
    /// and `sts.amazonaws.com`.
    pub api_audiences: Option<String>,
    /// More kube-apiserver flags (e.g. `--feature-gates=...`).
    pub apiserver_args: Vec<String>,
}

/// A running etcd + kube-apiserver.
pub struct Cluster {
    pub dir: PathBuf,
    pub url: String,
    pub ca_pem: String,
    pub kubeconfig: PathBuf,
    pub issuer: String,
    bin: PathBuf,
    apiserver_args: Vec<String>,
    apiserver: std::sync::Mutex<Option<Guarded>>,
    /// Signing keys added by [`Cluster::rotate_signing_key`], oldest first.
    rotated_keys: std::sync::Mutex<Vec<PathBuf>>,
    /// etcd's client address; `None` for your own cluster.
    etcd_addr: Option<std::net::SocketAddr>,
    // Dropped last: its guard removes `dir`. `None` for your own cluster.
    _etcd: Option<Guarded>,
}

impl Cluster {
    /// Builds (once, cached) and starts the control plane; panics with the logs on failure.
    /// With `$IRSA_E2E_KUBECONFIG` set, uses that cluster instead (see the README).
    pub fn start(options: ClusterOptions) -> Self {
        if let Ok(kubeconfig) = std::env::var("IRSA_E2E_KUBECONFIG") {
            return Self::external(PathBuf::from(kubeconfig));
        }
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("irsa-e2e-")
            .tempdir()
            .unwrap()
            .keep();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = Guarded::spawn(
            &bin.join("etcd"),
            &[
                "--name=e2e".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=e2e=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
            Some(&dir),
        );
        wait_for(&dir.join("etcd.log"), Duration::from_secs(30), || {
            super::http_get(([127, 0, 0, 1], etcd_port).into(), "/health")
                .is_ok_and(|(status, body)| status == 200 && body.contains("true"))
        });

        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        let serving = irsa_webhook::certs::generate(
            &["localhost".into(), "kubernetes.default.svc".into()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        serving.write(&pki, true).unwrap();
        let sa_key = pki.join("sa.key");
        rsa_key(&sa_key);
        let token = format!("e2e-admin-{}", std::process::id());
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{token},admin,admin-uid,system:masters\n"),
        )
        .unwrap();
        let url = format!("https://127.0.0.1:{api_port}");
        let issuer = options.issuer.unwrap_or_else(|| url.clone());
        let mut apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--tls-cert-file={}", pki.join("tls.crt").display()),
            format!("--tls-private-key-file={}", pki.join("tls.key").display()),
            "--authorization-mode=RBAC".into(),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            format!("--service-account-issuer={issuer}"),
            format!("--service-account-key-file={}", sa_key.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            format!(
                "--api-audiences={}",
                options
                    .api_audiences
                    .unwrap_or_else(|| format!("{issuer},sts.amazonaws.com"))
            ),
            // A webhook configuration that names a Service (the chart's) is called through the
            // Service's endpoints, never its ClusterIP or DNS name: no packet leaves the machine.
            "--enable-aggregator-routing=true".into(),
        ];
        apiserver_args.extend(options.apiserver_args);
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url, &serving.ca_cert, &token)).unwrap();
        let cluster = Self {
            dir,
            url,
            ca_pem: serving.ca_cert,
            kubeconfig,
            issuer,
            bin,
            apiserver_args,
            apiserver: std::sync::Mutex::new(None),
            rotated_keys: std::sync::Mutex::new(Vec::new()),
            etcd_addr: Some(([127, 0, 0, 1], etcd_port).into()),
            _etcd: Some(etcd),
        };
        cluster.start_apiserver();
        cluster
    }

    /// Your own cluster from `kubeconfig`; its issuer is read from its discovery document.
    fn external(kubeconfig: PathBuf) -> Self {
        let mut cluster = Self {
            dir: std::env::temp_dir(),
            url: String::new(),
            ca_pem: String::new(),
            kubeconfig,
            issuer: String::new(),
            bin: PathBuf::new(),
            apiserver_args: Vec::new(),
            apiserver: std::sync::Mutex::new(None),
            rotated_keys: std::sync::Mutex::new(Vec::new()),
            etcd_addr: None,
            _etcd: None,
        };
        let issuer = block_on(async {
            let client = cluster.client().await;
            let request = http::Request::get("/.well-known/openid-configuration")
                .body(Vec::new())
                .unwrap();
            let text = client
                .request_text(request)
                .await
                .expect("the cluster serves OIDC discovery");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["issuer"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        cluster.issuer = issuer;
        cluster
    }

    /// Whether this is the control plane the tests started (and may restart).
    pub fn is_local(&self) -> bool {
        self._etcd.is_some()
    }

    /// Starts kube-apiserver and waits for `/readyz`.
    pub fn start_apiserver(&self) {
        assert!(
            self.is_local(),
            "cannot start the API server of your own cluster"
        );
        let log = self.dir.join("kube-apiserver.log");
        let guard = Guarded::spawn(
            &self.bin.join("kube-apiserver"),
            &self.current_apiserver_args(),
            &log,
            None,
        );
        *self.apiserver.lock().unwrap() = Some(guard);
        let port = self.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        wait_for(&log, Duration::from_secs(90), || readyz(port, &self.ca_pem));
    }

    /// The API server's flags: after a rotation it signs with the newest key and still accepts
    /// (and publishes in its JWKS) every older one.
    fn current_apiserver_args(&self) -> Vec<String> {
        let rotated = self.rotated_keys.lock().unwrap();
        let Some(newest) = rotated.last() else {
            return self.apiserver_args.clone();
        };
        let signing = "--service-account-signing-key-file=";
        let mut args: Vec<String> = self
            .apiserver_args
            .iter()
            .filter(|a| !a.starts_with(signing))
            .cloned()
            .collect();
        // `--service-account-key-file` may be repeated; each adds its keys.
        args.extend(
            rotated
                .iter()
                .map(|k| format!("--service-account-key-file={}", k.display())),
        );
        args.push(format!("{signing}{}", newest.display()));
        args
    }

    /// Rotates the service-account signing key: makes a new RSA key and restarts kube-apiserver
    /// signing with it while keeping the old keys for verification. Returns the new key's path.
    pub fn rotate_signing_key(&self) -> PathBuf {
        assert!(
            self.is_local(),
            "cannot rotate the keys of your own cluster"
        );
        let key = {
            let mut rotated = self.rotated_keys.lock().unwrap();
            let key = self
                .dir
                .join("pki")
                .join(format!("sa-{}.key", rotated.len() + 2));
            rsa_key(&key);
            rotated.push(key.clone());
            key
        };
        self.stop_apiserver();
        self.start_apiserver();
        key
    }

    /// Stops kube-apiserver (etcd keeps running).
    pub fn stop_apiserver(&self) {
        if let Some(mut guard) = self.apiserver.lock().unwrap().take() {
            guard.stop();
        }
    }

    /// Calls etcd's v3 JSON gateway (`kv/deleterange`, `kv/put`, `kv/compaction`...) behind the
    /// API server's back; keys and values in the body are base64, as the gateway wants them.
    pub fn etcd(&self, call: &str, body: &serde_json::Value) -> serde_json::Value {
        use std::io::{Read, Write};
        let addr = self
            .etcd_addr
            .expect("etcd of the control plane the tests started");
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /v3/{call} HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, answer) = response.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200"), "etcd {call}: {response}");
        serde_json::from_str(answer).unwrap_or_else(|e| panic!("etcd {call}: {e}: {answer}"))
    }

    /// A client for this cluster; make one per test (clients are bound to their runtime).
    pub async fn client(&self) -> kube::Client {
        client(&self.kubeconfig).await
    }
}

/// A client for the cluster of `kubeconfig`; make one per runtime.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Whether `GET /readyz` answers 200 (anonymous access to it is allowed by default).
fn readyz(port: u16, ca_pem: &str) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let roots = super::roots(&[ca_pem]);
    block_on(async move {
        super::request(addr, roots, true, "GET", "/readyz", None, vec![])
            .await
            .is_ok_and(|(status, _)| status == 200)
    })
}

/// Runs a future to completion on a fresh runtime in its own thread, so it works from both
/// plain and async tests.
pub fn block_on<T: Send>(future: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(future)
            })
            .join()
            .unwrap()
    })
}

/// Polls `ready` until true; panics with the tail of `log` after `limit`.
fn wait_for(log: &Path, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    panic!(
        "{} not ready within {limit:?}; last log lines:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// A 2048-bit RSA key in PEM, as kubeadm makes for service-account signing.
pub fn rsa_key(path: &Path) {
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed to make the service-account signing key");
    assert!(status.success(), "openssl genpkey failed");
}

fn kubeconfig_yaml(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\ncurrent-context: e2e\n"
    )
}
