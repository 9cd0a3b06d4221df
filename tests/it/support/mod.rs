//! Shared by the integration tests: a running `irsa-webhook serve` and an HTTPS client for it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use irsa_webhook::certs;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A ServiceAccounts file with `team/app`, annotated with a role.
pub const SERVICE_ACCOUNTS: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: team
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/app
";

/// A free loopback port for a server a test is about to start (the probing listener is closed
/// again). It is taken from below the kernel's ephemeral port range: `bind(0)` picks from that
/// range, where every outgoing connection (an API server's to etcd, a client's to anything) also
/// takes its local port, so one of them could hold the port by the time the server binds it.
/// Each process walks the range from its own random start, so parallel test processes rarely
/// probe the same ports.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    // Above the well-known defaults of Kubernetes components (10248-10259, which the node binds).
    const FIRST: u32 = 20_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = below.saturating_sub(FIRST);
    assert!(
        span >= 1_000,
        "the ephemeral port range starts at {below}: too low to keep test ports out of it"
    );
    // RandomState's keys are random per process.
    let next = NEXT.get_or_init(|| AtomicU32::new(RandomState::new().hash_one(0u8) as u32));
    for _ in 0..span {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {below}");
}

/// The address webhooks started by tests listen on: loopback, or `$IRSA_E2E_WEBHOOK_HOST` when
/// the end-to-end tests run against your own cluster, whose API server must reach it.
pub fn webhook_host() -> std::net::IpAddr {
    std::env::var("IRSA_E2E_WEBHOOK_HOST")
        .ok()
        .map(|h| {
            h.parse()
                .expect("IRSA_E2E_WEBHOOK_HOST must be an IP address")
        })
        .unwrap_or([127, 0, 0, 1].into())
}

/// A serving certificate for localhost, 127.0.0.1 and [`webhook_host`] written into `dir`.
pub fn write_certs(dir: &Path) -> certs::Bundle {
    let mut ips = vec!["127.0.0.1".parse().unwrap()];
    if webhook_host() != ips[0] {
        ips.push(webhook_host());
    }
    let bundle = certs::generate(&["localhost".into()], &ips, 30).unwrap();
    bundle.write(dir, true).unwrap();
    bundle
}

/// `irsa-webhook serve` as a child process, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub health: SocketAddr,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

/// Starts `serve`, with the certificate files of `cert_dir` unless `args` bring their own TLS.
fn spawn(cert_dir: Option<&Path>, port: u16, metrics_port: u16, args: &[String]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"));
    command
        .arg("serve")
        .args(["--bind-address", &webhook_host().to_string()])
        .args(["--port", &port.to_string()])
        .args(["--metrics-port", &metrics_port.to_string()]);
    if let Some(dir) = cert_dir {
        command
            .arg("--tls-cert")
            .arg(dir.join(certs::TLS_CERT))
            .arg("--tls-key")
            .arg(dir.join(certs::TLS_KEY));
    }
    command
        .args(args)
        .env("IRSA_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

impl Server {
    /// Starts `serve --service-accounts-file` with `service_accounts` YAML and extra `args`.
    pub fn with_service_accounts(service_accounts: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sa_file = dir.path().join("serviceaccounts.yaml");
        std::fs::write(&sa_file, service_accounts).unwrap();
        let mut all = vec![
            "--service-accounts-file".to_owned(),
            sa_file.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        Self::start(dir, &all)
    }

    /// Starts `serve` with certificates in `dir` (generated unless present) and `args`.
    pub fn start(dir: tempfile::TempDir, args: &[String]) -> Self {
        let cert_dir = dir.path().join("tls");
        if !cert_dir.join(certs::TLS_CERT).exists() {
            std::fs::create_dir_all(&cert_dir).unwrap();
            write_certs(&cert_dir);
        }
        let ca_pem = std::fs::read_to_string(cert_dir.join(certs::CA_CERT)).unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let server = Self {
            child: spawn(Some(&cert_dir), port, metrics_port, args),
            addr: SocketAddr::new(webhook_host(), port),
            health: SocketAddr::new(webhook_host(), metrics_port),
            ca_pem,
            args: args.to_vec(),
            dir,
        };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    /// Starts `serve` with `args` that configure TLS themselves (`--cert-secret`); `ca_pem` is
    /// then empty.
    pub fn start_self_managed(args: &[String]) -> Self {
        let (port, metrics_port) = (free_port(), free_port());
        let server = Self {
            child: spawn(None, port, metrics_port, args),
            addr: SocketAddr::new(webhook_host(), port),
            health: SocketAddr::new(webhook_host(), metrics_port),
            ca_pem: String::new(),
            args: args.to_vec(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    /// Kills the process and starts it again on the same ports with the same certificate.
    pub fn restart(&mut self) {
        self.stop();
        let cert_dir = (!self.ca_pem.is_empty()).then(|| self.tls_dir());
        self.child = spawn(
            cert_dir.as_deref(),
            self.addr.port(),
            self.health.port(),
            &self.args,
        );
        self.wait_ready(Duration::from_secs(30));
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `/readyz` until 200; panics after `limit` or if the process exits.
    pub fn wait_ready(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok((200, _)) = http_get(self.health, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("webhook not ready within {limit:?}");
    }

    /// The TLS directory holding the serving certificate.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// The value of one sample in `/metrics`, e.g. `irsa_webhook_admissions_total{decision="mutated"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, text) = http_get(self.health, "/metrics").unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking plain-HTTP GET, for health endpoints.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Roots trusting every PEM CA given.
pub fn roots(cas: &[&str]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    roots
}

/// A TLS connection to `addr` as `localhost`, offering `alpn`, restricted to `versions`.
pub async fn tls_connect(
    addr: SocketAddr,
    roots: RootCertStore,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_to(addr, "localhost", roots, alpn, versions).await
}

/// A TLS connection to `addr` for server name `name`, offering `alpn`, restricted to
/// `versions`.
pub async fn tls_connect_to(
    addr: SocketAddr,
    name: &str,
    roots: RootCertStore,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(irsa_webhook::serving::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The DER of the certificate the server presented.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One request on a fresh connection (HTTP/2 when `h2`), returning status and body.
pub async fn request(
    addr: SocketAddr,
    roots: RootCertStore,
    h2: bool,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> std::io::Result<(u16, Bytes)> {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let stream = tls_connect(addr, roots, alpn, rustls::ALL_VERSIONS).await?;
    let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated.as_deref(), Some(alpn[0]), "ALPN");
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let io = TokioIo::new(stream);
    let to_io = |e: hyper::Error| std::io::Error::other(e.to_string());
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(to_io)?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(to_io)?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(to_io)?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(to_io)?
    };
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(to_io)?
        .to_bytes();
    Ok((status, body))
}

/// A kept-alive client connection (HTTP/2 when `h2`): several requests on it, and whether the
/// server has closed it.
pub struct KeptAlive {
    sender: Sender,
    /// The connection's task: finished once the connection has ended.
    driver: tokio::task::JoinHandle<()>,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl KeptAlive {
    /// Opens a TLS connection to `addr` and completes the HTTP handshake.
    pub async fn open(addr: SocketAddr, roots: RootCertStore, h2: bool) -> std::io::Result<Self> {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        Self::handshake(
            tls_connect(addr, roots, alpn, rustls::ALL_VERSIONS).await?,
            h2,
        )
        .await
    }

    /// Opens a plain HTTP/1.1 connection to `addr`.
    pub async fn plain(addr: SocketAddr) -> std::io::Result<Self> {
        Self::handshake(TcpStream::connect(addr).await?, false).await
    }

    async fn handshake<S>(stream: S, h2: bool) -> std::io::Result<Self>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(stream);
        let to_io = |e: hyper::Error| std::io::Error::other(e.to_string());
        let (sender, driver) = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(to_io)?;
            (
                Sender::Http2(sender),
                tokio::spawn(async move { conn.await.ok().unwrap_or(()) }),
            )
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(to_io)?;
            (
                Sender::Http1(sender),
                tokio::spawn(async move { conn.await.ok().unwrap_or(()) }),
            )
        };
        Ok(Self { sender, driver })
    }

    /// `POST path` with a JSON `body`: status, headers and body of the answer.
    pub async fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), hyper::Error> {
        let request = hyper::Request::post(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(request).await
    }

    /// `GET path`: status, headers and body of the answer.
    pub async fn get(
        &mut self,
        path: &str,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), hyper::Error> {
        let request = hyper::Request::get(path)
            .header("host", "irsa-webhook.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(request).await
    }

    async fn send(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), hyper::Error> {
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        Ok((
            parts.status.as_u16(),
            parts.headers,
            body.collect().await?.to_bytes(),
        ))
    }

    /// Whether the connection has ended (closed by the server, or GOAWAY and done).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// Waits up to `limit` for the connection to end; whether it did.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, &mut self.driver).await.is_ok()
    }
}

pub mod chaos;
pub mod cluster;
pub mod discovery;
pub mod e2e;
pub mod helm;
pub mod issuer;
pub mod node;
pub mod sidecar;
pub mod sts;
pub mod tokens;

/// What an install script provides: `$var` when it is set, else the last line `script` (a path
/// in the repository) prints on stdout; its progress goes to the test's output. `needs` says
/// what the script needs, for when it fails.
pub fn installed(var: &str, script: &str, needs: &str) -> PathBuf {
    if let Some(value) = std::env::var_os(var) {
        return PathBuf::from(value);
    }
    let output = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {script}: {e}"));
    assert!(output.status.success(), "{script} failed: {needs}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().map(str::trim).unwrap_or_default();
    assert!(!last.is_empty(), "{script} printed nothing (set {var})");
    PathBuf::from(last)
}

/// Runs `program args`, returning stdout, or stderr and stdout when it fails.
pub fn run(mut command: Command, stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let described = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{described} failed ({}):\n{}{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
