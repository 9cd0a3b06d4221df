//! AWS calls without the per-service SDKs. aws-config supplies the standard chain (credentials
//! from `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, web identity or instance metadata; the region;
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`), aws-sigv4 signs every request, and hyper
//! sends it over rustls, the whole call (retries included) within a deadline. IAM and STS speak
//! the Query protocol ([`query`]), S3 its REST one ([`s3`]); [`endpoint`] says where each lives.

pub mod endpoint;
pub mod query;
pub mod s3;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::service_config::ServiceConfigKey;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::errors::chain;
use endpoint::{EndpointError, Endpoints};

/// The largest answer read; IAM, STS and the issuer documents are far smaller.
const MAX_ANSWER: usize = 4 << 20;

/// Attempts per call when the failure is transient (a connection error, a 5xx, throttling), as
/// the SDKs' standard retry mode does.
const ATTEMPTS: u32 = 3;

/// Credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Error codes that mean "try again later".
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "RequestTimeout",
    "InternalError",
];

/// Why a call failed. `operation` names it the way IAM policies do (`iam:GetRole`).
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{operation}: no usable AWS credentials: {cause}")]
    Credentials { operation: String, cause: String },
    #[error("{operation}: cannot sign the request for {url}: {cause}")]
    Signing {
        operation: String,
        url: String,
        cause: String,
    },
    #[error("{operation}: {url}: {cause}")]
    Transport {
        operation: String,
        url: String,
        cause: String,
    },
    #[error("{operation}: {url} gave no complete answer within {}", humantime::format_duration(*.limit))]
    Timeout {
        operation: String,
        url: String,
        limit: Duration,
    },
    #[error("{operation}: {code}: {message} (HTTP {status}){}", hint(code))]
    Service {
        operation: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{operation}: the answer cannot be read: {cause}")]
    Answer { operation: String, cause: String },
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

impl AwsError {
    /// The service's error code (`NoSuchEntity`, `NoSuchKey`), if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    fn transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Service { status, code, .. } => {
                *status >= 500 || THROTTLING.contains(&code.as_str())
            }
            _ => false,
        }
    }
}

/// What to do about the error codes whose fix is not in their message.
fn hint(code: &str) -> &'static str {
    match code {
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => "; set AWS_REGION to the bucket's region",
        "SignatureDoesNotMatch" | "InvalidClientTokenId" | "InvalidAccessKeyId" => {
            "; check the credentials and the machine's clock"
        }
        _ => "",
    }
}

/// How a request is signed: the service's signing name, the region, and whether the payload's
/// SHA-256 goes in a header and the path is signed as sent (S3).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub service: &'static str,
    pub region: &'a str,
    pub s3: bool,
}

/// One request to sign and send.
pub struct Call<'a> {
    /// Named in errors: `iam:GetRole`, `s3:PutObject`.
    pub operation: &'a str,
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub signing: Signing<'a>,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

type Https = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Signs and sends requests with the standard configuration; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: SdkConfig,
    http: Https,
    credentials: tokio::sync::Mutex<Option<Credentials>>,
    limit: Duration,
}

impl Client {
    /// Loads the standard configuration; every call (retries included) ends within `limit`.
    /// Without a configured region, `us-east-1`: IAM is global, and signing needs one.
    pub async fn new(limit: Duration) -> Self {
        let connect = limit.min(Duration::from_secs(5));
        let sdk_http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(sdk_http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(connect)
                    .operation_timeout(limit)
                    .build(),
            )
            .load()
            .await;
        let config = match config.region() {
            Some(_) => config,
            None => config
                .into_builder()
                .region(Region::new("us-east-1"))
                .build(),
        };
        Self {
            inner: Arc::new(Inner {
                config,
                http: https(connect),
                credentials: tokio::sync::Mutex::default(),
                limit,
            }),
        }
    }

    /// Where the services are, from the configured region and endpoint overrides.
    pub fn endpoints(&self) -> Endpoints {
        let config = &self.inner.config;
        let region = config.region().map_or("us-east-1", Region::as_ref);
        Endpoints::new(region, config.use_fips().unwrap_or(false))
            .dual_stack(config.use_dual_stack().unwrap_or(false))
            .overrides(|service_id| self.endpoint_override(service_id))
    }

    /// `AWS_ENDPOINT_URL_<SERVICE>` (or `endpoint_url` in the profile's service section), else
    /// `AWS_ENDPOINT_URL`.
    fn endpoint_override(&self, service_id: &str) -> Option<String> {
        let config = &self.inner.config;
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("every field is set");
        config
            .service_config()
            .and_then(|c| c.load_config(key))
            .or_else(|| config.endpoint_url().map(str::to_owned))
    }

    /// Sends `call`, retrying transient failures, all within the deadline; an answer other than
    /// 2xx is an [`AwsError::Service`] with the code and message the service gave.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, AwsError> {
        let limit = self.inner.limit;
        let deadline = Instant::now() + limit;
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout_at(deadline, self.attempt(call))
                .await
                .unwrap_or_else(|_| {
                    Err(AwsError::Timeout {
                        operation: call.operation.to_owned(),
                        url: call.url.clone(),
                        limit,
                    })
                });
            match result {
                Err(e) if e.transient() && attempt < ATTEMPTS => {
                    let pause = Duration::from_millis(100 << (2 * (attempt - 1)));
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "retrying an AWS call");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Answer, AwsError> {
        let request = self.signed(call).await?;
        let transport = |cause: String| AwsError::Transport {
            operation: call.operation.to_owned(),
            url: call.url.clone(),
            cause,
        };
        let response = self
            .inner
            .http
            .request(request)
            .await
            .map_err(|e| transport(chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        let (code, message) = error_of(&body).unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error");
            (
                reason.replace(' ', ""),
                format!("HTTP {status} with no error document"),
            )
        });
        Err(AwsError::Service {
            operation: call.operation.to_owned(),
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn signed(&self, call: &Call<'_>) -> Result<hyper::Request<Full<Bytes>>, AwsError> {
        let identity: Identity = self.credentials(call.operation).await?.into();
        let signing_error = |cause: String| AwsError::Signing {
            operation: call.operation.to_owned(),
            url: call.url.clone(),
            cause,
        };
        let mut settings = SigningSettings::default();
        if call.signing.s3 {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(call.signing.region)
            .name(call.signing.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| signing_error(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            call.method.as_str(),
            &call.url,
            call.headers
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
            SignableBody::Bytes(&call.body),
        )
        .map_err(|e| signing_error(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| signing_error(e.to_string()))?
            .into_parts();
        let mut request = hyper::Request::builder()
            .method(call.method.clone())
            .uri(&call.url);
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        let mut request = request
            .body(Full::new(call.body.clone()))
            .map_err(|e| signing_error(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// The chain's credentials, kept until five minutes before they expire.
    async fn credentials(&self, operation: &str) -> Result<Credentials, AwsError> {
        let mut cached = self.inner.credentials.lock().await;
        let fresh_enough = |c: &Credentials| {
            c.expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + RENEW_BEFORE)
        };
        if let Some(credentials) = cached.as_ref().filter(|c| fresh_enough(c)) {
            return Ok(credentials.clone());
        }
        let failed = |cause: String| AwsError::Credentials {
            operation: operation.to_owned(),
            cause,
        };
        let provider = self
            .inner
            .config
            .credentials_provider()
            .ok_or_else(|| failed("no credential provider is configured".to_owned()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| failed(chain(&e)))?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}

/// A pooled HTTP/1.1 client over rustls (TLS 1.2+) trusting the system's roots
/// (`SSL_CERT_FILE`, `SSL_CERT_DIR` honoured) and the Mozilla roots.
fn https(connect: Duration) -> Https {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = super::tls::client_builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The `Code` and `Message` of an AWS error document (Query `ErrorResponse` or S3 `Error`).
fn error_of(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let document = roxmltree::Document::parse(text).ok()?;
    let code = query::first_text(&document, "Code")?;
    let message = query::first_text(&document, "Message").unwrap_or_default();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_give_code_and_message() {
        let iam = br#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
          <Error><Type>Sender</Type><Code>NoSuchEntity</Code>
          <Message>The role with name nobody cannot be found.</Message></Error>
          <RequestId>4a</RequestId></ErrorResponse>"#;
        assert_eq!(
            error_of(iam),
            Some((
                "NoSuchEntity".into(),
                "The role with name nobody cannot be found.".into()
            ))
        );
        let s3 = br#"<?xml version="1.0" encoding="UTF-8"?>
          <Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>
          <Key>openid/v1/jwks</Key></Error>"#;
        assert_eq!(error_of(s3).unwrap().0, "NoSuchKey");
        assert_eq!(error_of(b""), None);
        assert_eq!(error_of(b"<html>busy</html>"), None);
    }

    #[test]
    fn transient_failures_are_retried_and_the_rest_are_not() {
        let service = |status, code: &str| AwsError::Service {
            operation: "s3:GetObject".into(),
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(service(503, "SlowDown").transient());
        assert!(service(500, "InternalError").transient());
        assert!(service(400, "Throttling").transient());
        assert!(!service(404, "NoSuchKey").transient());
        assert!(!service(403, "AccessDenied").transient());
        let redirect = service(301, "PermanentRedirect").to_string();
        assert!(
            redirect.ends_with("set AWS_REGION to the bucket's region"),
            "{redirect}"
        );
    }
}
