//! A diagnostic HTTPS client (`doctor`, the discovery server's public self-check): connects as
//! STS or the API server would, records whether the
//! server's chain is publicly trusted (Mozilla's roots) and whether extra roots trust it, and
//! still completes the request when neither does, so the documents can be checked anyway. It
//! sends no credentials. Every step is bounded by one deadline and the body by a size limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::serving::errors::chain;
use crate::serving::tls::provider;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{0:?} is not an https:// URL with a host")]
    Url(String),
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: String },
    #[error("TLS handshake with {addr} failed: {cause}")]
    Tls { addr: String, cause: String },
    #[error("HTTP exchange with {addr} failed: {cause}")]
    Http { addr: String, cause: String },
    #[error("no answer from {addr} within {}", humantime::format_duration(*.limit))]
    Timeout { addr: String, limit: Duration },
}

/// Which roots judge the server's certificate chain.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Mozilla's root programme (what "publicly trusted" means here).
    pub public: bool,
    /// More CA certificates (a private CA, a webhook's `caBundle`).
    pub extra: Vec<CertificateDer<'static>>,
}

/// What the handshake showed about the server's certificates.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// As presented, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The verdict of the public roots, when asked.
    pub public: Option<Result<(), String>>,
    /// The verdict of the extra roots, when given.
    pub extra: Option<Result<(), String>>,
}

impl Seen {
    /// SHA-1 of the last certificate the server presented, lowercase hex: the thumbprint IAM
    /// wants for an OIDC provider whose certificate is not publicly trusted.
    pub fn thumbprint(&self) -> Option<String> {
        let last = self.chain.last()?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, last);
        Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
    /// From the start of the connection to the last byte of the body.
    pub elapsed: Duration,
    pub seen: Seen,
}

/// GETs `url` within `limit`, reading at most `max_body` + 1 bytes of the body.
pub async fn get(
    url: &str,
    roots: &Roots,
    limit: Duration,
    max_body: usize,
) -> Result<Answer, HttpsError> {
    let uri: Uri = url.parse().map_err(|_| HttpsError::Url(url.to_owned()))?;
    let host = match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(host)) => host.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(HttpsError::Url(url.to_owned())),
    };
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or(host),
        uri.port_u16().unwrap_or(443)
    );
    let started = Instant::now();
    let exchange = async {
        let (stream, seen) = connect(&addr, host, roots).await?;
        let http = |cause: hyper::Error| HttpsError::Http {
            addr: addr.clone(),
            cause: chain(&cause),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let request = Request::get(path)
            .header(header::HOST, authority)
            .header(
                header::USER_AGENT,
                concat!("irsa-webhook-doctor/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpsError::Url(format!("{url}: {e}")))?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(http)?.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > max_body {
                    bytes.truncate(max_body + 1);
                    break;
                }
            }
        }
        Ok(Answer {
            status,
            location,
            body: bytes,
            elapsed: started.elapsed(),
            seen,
        })
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HttpsError::Timeout {
                addr: addr.clone(),
                limit,
            })
        })
}

/// Connects to `addr` and completes a TLS handshake for `server_name`, whatever the roots say.
pub async fn connect(
    addr: &str,
    server_name: &str,
    roots: &Roots,
) -> Result<(TlsStream<TcpStream>, Seen), HttpsError> {
    let tls = |cause: String| HttpsError::Tls {
        addr: addr.to_owned(),
        cause,
    };
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
        tls(format!(
            "{server_name:?} is not a DNS name or IP address: {e}"
        ))
    })?;
    let recorder = Arc::new(Recorder::new(roots).map_err(tls)?);
    let mut config = super::tls::client_builder()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| HttpsError::Connect {
            addr: addr.to_owned(),
            cause: e.to_string(),
        })?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| tls(e.to_string()))?;
    let seen = recorder.seen.lock().expect("not poisoned").clone();
    Ok((stream, seen))
}

/// Accepts any chain but records what the public and the extra roots think of it; handshake
/// signatures are still verified.
#[derive(Debug)]
struct Recorder {
    public: Option<Arc<WebPkiServerVerifier>>,
    extra: Option<Arc<WebPkiServerVerifier>>,
    seen: Mutex<Seen>,
}

impl Recorder {
    fn new(roots: &Roots) -> Result<Self, String> {
        let build = |store: RootCertStore| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
                .build()
                .map_err(|e| e.to_string())
        };
        let public = roots
            .public
            .then(|| {
                let mut store = RootCertStore::empty();
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                build(store)
            })
            .transpose()?;
        let extra = (!roots.extra.is_empty())
            .then(|| {
                let mut store = RootCertStore::empty();
                let (_, ignored) = store.add_parsable_certificates(roots.extra.iter().cloned());
                if store.is_empty() {
                    return Err(format!(
                        "none of the {ignored} CA certificates given is usable"
                    ));
                }
                build(store)
            })
            .transpose()?;
        Ok(Self {
            public,
            extra,
            seen: Mutex::default(),
        })
    }

    fn any(&self) -> &WebPkiServerVerifier {
        self.public
            .as_deref()
            .or(self.extra.as_deref())
            .expect("Roots has public or extra roots")
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = |v: &Option<Arc<WebPkiServerVerifier>>| {
            v.as_ref().map(|v| {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        };
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        seen.public = verdict(&self.public);
        seen.extra = verdict(&self.extra);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any().supported_verify_schemes()
    }
}
