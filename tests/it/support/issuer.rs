//! A public issuer the test controls: serves the discovery document and the JWKS over HTTPS on
//! loopback with a test CA, exactly as stored in [`Served`], so a test can publish a wrong
//! issuer, a stale key set, a slow answer or an error status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use irsa_webhook::certs;
use irsa_webhook::serving::tls::{PemSource, server_config_from_pem};

/// What the issuer serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub discovery: Vec<u8>,
    pub jwks: Vec<u8>,
    /// Waited before each answer.
    pub delay: Duration,
    pub status: u16,
}

/// The server; it lives as long as the test process.
pub struct PublicIssuer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signed its certificate.
    pub ca_pem: String,
    served: Arc<Mutex<Served>>,
}

impl PublicIssuer {
    /// Starts serving empty documents on a free port, on a thread of its own.
    pub fn start() -> Self {
        let bundle =
            certs::generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()], 30).unwrap();
        let config = server_config_from_pem(
            &PemSource {
                name: "cert",
                pem: bundle.tls_cert.as_bytes(),
            },
            &PemSource {
                name: "key",
                pem: bundle.tls_key.as_bytes(),
            },
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(Mutex::new(Served {
            discovery: Vec::new(),
            jwks: Vec::new(),
            delay: Duration::ZERO,
            status: 200,
        }));
        let shared = served.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, served) = (acceptor.clone(), shared.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |request: Request<_>| {
                            let served = served.clone();
                            async move {
                                Ok::<_, Infallible>(answer(&served, request.uri().path()).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Self {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: bundle.ca_cert,
            served,
        }
    }

    /// Changes what is served.
    pub fn set(&self, change: impl FnOnce(&mut Served)) {
        change(&mut self.served.lock().unwrap());
    }

    /// What is served now.
    pub fn served(&self) -> Served {
        self.served.lock().unwrap().clone()
    }
}

async fn answer(served: &Mutex<Served>, path: &str) -> Response<Full<Bytes>> {
    let now = served.lock().unwrap().clone();
    tokio::time::sleep(now.delay).await;
    let body = match path {
        "/.well-known/openid-configuration" => now.discovery,
        "/openid/v1/jwks" => now.jwks,
        _ => {
            return Response::builder()
                .status(404)
                .body(Full::default())
                .unwrap();
        }
    };
    Response::builder()
        .status(now.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
