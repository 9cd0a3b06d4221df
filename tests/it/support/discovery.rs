//! `irsa-webhook discovery` in front of a real API server, and a relying party that reads it the
//! way STS does: from nothing but the issuer URL, over HTTPS, trusting only the test CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use irsa_webhook::certs;
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

use super::cluster::Guarded;
use super::{free_port, http_get};

/// The discovery server as a child process; stops when dropped or when the test process exits.
pub struct DiscoveryServer {
    /// Its public https URL, which is the issuer.
    pub issuer: String,
    /// The CA that signed its serving certificate: the only root a relying party trusts.
    pub ca_pem: String,
    pub health: SocketAddr,
    pub log: PathBuf,
    _process: Guarded,
}

impl DiscoveryServer {
    /// Picks the port first: the API server must be started with the issuer URL before the
    /// discovery server can be started against it.
    pub fn reserve() -> (u16, String) {
        let port = free_port();
        (port, format!("https://127.0.0.1:{port}"))
    }

    /// Starts on `port` (from [`DiscoveryServer::reserve`]) against the API server of
    /// `kubeconfig`, refreshing every second, and waits until it is ready.
    pub fn start(port: u16, kubeconfig: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("irsa-discovery-")
            .tempdir()
            .unwrap()
            .keep();
        let bundle =
            certs::generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()], 30).unwrap();
        bundle.write(&dir, true).unwrap();
        let issuer = format!("https://127.0.0.1:{port}");
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.join("discovery.log");
        let args: Vec<String> = vec![
            "discovery".into(),
            format!("--issuer-url={issuer}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--metrics-port={}", health.port()),
            format!("--tls-cert={}", dir.join(certs::TLS_CERT).display()),
            format!("--tls-key={}", dir.join(certs::TLS_KEY).display()),
            "--refresh-interval=1s".into(),
            "--fetch-timeout=2s".into(),
        ];
        let process = Guarded::spawn(
            Path::new(env!("CARGO_BIN_EXE_irsa-webhook")),
            &args,
            &log,
            Some(&dir),
        );
        let server = Self {
            issuer,
            ca_pem: bundle.ca_cert,
            health,
            log,
            _process: process,
        };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    /// Polls `/readyz` (ready = a good copy of the API server's documents is published).
    pub fn wait_ready(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok((200, _)) = http_get(self.health, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the discovery server was not ready within {limit:?}; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Polls the published JWKS until `done` holds for it; panics after `limit`.
    pub async fn wait_for_jwks(&self, limit: Duration, done: impl Fn(&JwkSet) -> bool) -> JwkSet {
        let started = Instant::now();
        loop {
            let relying_party = RelyingParty::discover(&self.issuer, &self.ca_pem).await;
            if done(&relying_party.jwks) {
                return relying_party.jwks;
            }
            assert!(
                started.elapsed() < limit,
                "the published JWKS did not change as expected within {limit:?}: {:?}; log:\n{}",
                relying_party.jwks,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What a relying party such as STS learns from an issuer URL alone.
#[derive(Debug)]
pub struct RelyingParty {
    pub issuer: String,
    pub configuration: Value,
    pub jwks: JwkSet,
}

impl RelyingParty {
    /// Fetches `{issuer}/.well-known/openid-configuration`, checks that it names exactly this
    /// issuer, and follows its `jwks_uri`; panics on anything STS would reject.
    pub async fn discover(issuer: &str, ca_pem: &str) -> Self {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (content_type, body) = https_get(&url, ca_pem).await;
        assert_eq!(content_type, "application/json", "{url}");
        let configuration: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            configuration["issuer"], issuer,
            "the discovery document must name the issuer exactly"
        );
        assert!(
            configuration["id_token_signing_alg_values_supported"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "RS256")),
            "{configuration}"
        );
        let jwks_uri = configuration["jwks_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("no jwks_uri in {configuration}"));
        assert!(jwks_uri.starts_with("https://"), "{jwks_uri}");
        let (content_type, body) = https_get(jwks_uri, ca_pem).await;
        assert!(
            content_type == "application/json" || content_type == "application/jwk-set+json",
            "{jwks_uri}: {content_type}"
        );
        let jwks = serde_json::from_slice(&body).unwrap();
        Self {
            issuer: issuer.to_owned(),
            configuration,
            jwks,
        }
    }

    /// Verifies `token` as STS does (signature with a published key, `iss`, `aud`, `exp`, and a
    /// `sub`); returns its claims.
    pub fn verify(&self, token: &str, audience: &str) -> Value {
        super::tokens::verify(token, &self.jwks, &self.issuer, audience)
    }
}

/// GET `url` (https only) trusting only `ca_pem` and checking the certificate against the URL's
/// host; returns the content type and body of a 200 answer, panics otherwise.
pub async fn https_get(url: &str, ca_pem: &str) -> (String, Bytes) {
    let uri: http::Uri = url.parse().unwrap();
    assert_eq!(uri.scheme_str(), Some("https"), "{url}");
    let host = uri.host().unwrap().to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let config =
        rustls::ClientConfig::builder_with_provider(irsa_webhook::serving::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(super::roots(&[ca_pem]))
            .with_no_client_auth();
    let fetch = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let request = hyper::Request::get(uri.path())
            .header("host", uri.authority().unwrap().as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok::<_, std::io::Error>((status, content_type, body))
    };
    let (status, content_type, body) = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .unwrap_or_else(|_| panic!("GET {url} timed out"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    (content_type, body)
}
