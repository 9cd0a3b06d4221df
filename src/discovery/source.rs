//! Fetches the two documents from the API server with the client's own credentials.

use crate::serving::errors::chain;
use std::time::Duration;

use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kube::client::Body;

use super::document::MAX_BODY_BYTES;

/// Why a document could not be fetched at all.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {path} took longer than --fetch-timeout {}", humantime::format_duration(*.timeout))]
    Timeout {
        path: &'static str,
        timeout: Duration,
    },
    #[error("GET {path} from {server} failed: {}", chain(cause))]
    Request {
        path: &'static str,
        server: String,
        cause: kube::Error,
    },
    #[error("GET {path} answered HTTP {status}{hint}: {body}")]
    Status {
        path: &'static str,
        status: StatusCode,
        hint: &'static str,
        body: String,
    },
}

impl FetchError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Request { .. } => "unreachable",
            Self::Status { .. } => "http_status",
        }
    }
}

/// Where the keys come from.
pub enum Source {
    /// The API server's discovery document and JWKS.
    ApiServer(ApiServer),
    /// `--key-file`: the API server's key files; the discovery document is rendered here.
    KeyFiles(Vec<std::path::PathBuf>),
}

/// The API server, reached through a client built from in-cluster credentials or a kubeconfig.
pub struct ApiServer {
    client: kube::Client,
    url: String,
    timeout: Duration,
}

impl ApiServer {
    /// Each fetch through `client` (to the API server at `url`) is abandoned after `timeout`.
    pub fn new(client: kube::Client, url: String, timeout: Duration) -> Self {
        Self {
            client,
            url,
            timeout,
        }
    }

    /// The body at `path` on success; at most [`MAX_BODY_BYTES`] + 1 bytes are read, so an
    /// oversized answer is recognisable without holding all of it.
    pub async fn fetch(&self, path: &'static str) -> Result<Vec<u8>, FetchError> {
        tokio::time::timeout(self.timeout, self.get(path))
            .await
            .unwrap_or(Err(FetchError::Timeout {
                path,
                timeout: self.timeout,
            }))
    }

    async fn get(&self, path: &'static str) -> Result<Vec<u8>, FetchError> {
        let failed = |cause| FetchError::Request {
            path,
            server: self.url.trim_end_matches('/').to_owned(),
            cause,
        };
        let request = Request::get(path)
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .body(Body::empty())
            .expect("a constant path and header make a valid request");
        let response = self.client.send(request).await.map_err(failed)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(failed)?.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > MAX_BODY_BYTES {
                    bytes.truncate(MAX_BODY_BYTES + 1);
                    break;
                }
            }
        }
        if !status.is_success() {
            let hint = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    " (the identity needs the system:service-account-issuer-discovery ClusterRole)"
                }
                StatusCode::NOT_FOUND => {
                    " (the API server serves discovery only with an https --service-account-issuer)"
                }
                _ => "",
            };
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            return Err(FetchError::Status {
                path,
                status,
                hint,
                body: text.trim().to_owned(),
            });
        }
        Ok(bytes)
    }
}
