//! rustls server configuration whose certificate is re-read when the files change.
//!
//! Each new connection checks the files' metadata (following symlinks, so the `..data` swap of a
//! Kubernetes Secret volume is seen) and rebuilds the configuration when it changed. A pair that
//! does not load (half-written, key not matching) is logged and the previous one keeps serving.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // `cause`, not `source`: the message already says it, and a chain would say it twice.
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{name} holds no PEM certificate")]
    NoCertificate { name: String },
    #[error("{name} is not a PEM certificate chain: {reason}")]
    BadCertificate { name: String, reason: String },
    #[error("{name} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { name: String, reason: String },
    #[error("{cert} and {key} do not form a usable pair: {reason}")]
    Pair {
        cert: String,
        key: String,
        reason: String,
    },
}

/// Identity of a file's current content as far as metadata tells.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl From<&Metadata> for Stamp {
    fn from(m: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        }
    }
}

/// Called after every reload attempt, e.g. to count it.
type ReloadHook = dyn Fn(Result<(), &TlsError>) + Send + Sync;

/// A TLS server configuration that follows its certificate and key files, or that is replaced
/// explicitly when it comes from elsewhere (a Secret).
pub struct ReloadingConfig {
    current: ArcSwap<ServerConfig>,
    files: Option<Files>,
    on_reload: Box<ReloadHook>,
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
    stamps: Mutex<(Stamp, Stamp)>,
}

impl ReloadingConfig {
    /// Loads the pair once; fails when it is unusable, so a bad start is loud.
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        on_reload: impl Fn(Result<(), &TlsError>) + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let stamps = (stamp(&cert)?, stamp(&key)?);
        let config = server_config(&cert, &key)?;
        Ok(Self {
            current: ArcSwap::from_pointee(config),
            files: Some(Files {
                cert,
                key,
                stamps: Mutex::new(stamps),
            }),
            on_reload: Box::new(on_reload),
        })
    }

    /// A configuration from PEM in memory, changed only by [`replace_pem`](Self::replace_pem).
    pub fn from_pem(
        cert: &PemSource<'_>,
        key: &PemSource<'_>,
        on_reload: impl Fn(Result<(), &TlsError>) + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            current: ArcSwap::from_pointee(server_config_from_pem(cert, key)?),
            files: None,
            on_reload: Box::new(on_reload),
        })
    }

    /// Serves a new certificate from the next connection on; on error the current one stays.
    pub fn replace_pem(&self, cert: &PemSource<'_>, key: &PemSource<'_>) -> Result<(), TlsError> {
        let result =
            server_config_from_pem(cert, key).map(|config| self.current.store(Arc::new(config)));
        (self.on_reload)(result.as_ref().map(|_| ()));
        result
    }

    /// The configuration for a new connection, reloaded first if the files changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.reload_if_changed();
        self.current.load_full()
    }

    fn reload_if_changed(&self) {
        let Some(files) = &self.files else {
            return;
        };
        let (Ok(cert), Ok(key)) = (stamp(&files.cert), stamp(&files.key)) else {
            // Mid-swap or deleted: keep serving what we have; the next connection retries.
            return;
        };
        let mut stamps = files.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if stamps.0 == cert && stamps.1 == key {
            return;
        }
        match server_config(&files.cert, &files.key) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                *stamps = (cert, key);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                (self.on_reload)(Ok(()));
            }
            Err(err) => {
                // Remember the stamps so a bad pair is reported once, not on every connection.
                *stamps = (cert, key);
                tracing::error!(error = %err, "TLS certificate not reloaded; still serving the previous one");
                (self.on_reload)(Err(&err));
            }
        }
    }
}

fn stamp(path: &Path) -> Result<Stamp, TlsError> {
    std::fs::metadata(path)
        .map(|m| Stamp::from(&m))
        .map_err(|cause| TlsError::Read {
            path: path.to_owned(),
            cause,
        })
}

/// The crypto provider used by every TLS endpoint of this crate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, nothing older, for every server and client of this crate.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client configuration with [`provider`] and [`VERSIONS`], its verifier still to choose.
pub fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
}

/// PEM text and a name for it in error messages (a path, or a Secret key).
pub struct PemSource<'a> {
    pub name: &'a str,
    pub pem: &'a [u8],
}

/// Reads a PEM certificate chain and key from files and builds the server configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|cause| TlsError::Read {
            path: path.to_owned(),
            cause,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let (cert_name, key_name) = (cert.display().to_string(), key.display().to_string());
    server_config_from_pem(
        &PemSource {
            name: &cert_name,
            pem: &cert_pem,
        },
        &PemSource {
            name: &key_name,
            pem: &key_pem,
        },
    )
}

/// Builds a TLS 1.2/1.3 server configuration with ALPN `h2` and `http/1.1` from PEM.
pub fn server_config_from_pem(
    cert: &PemSource<'_>,
    key: &PemSource<'_>,
) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            name: cert.name.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            name: cert.name.to_owned(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_slice(key.pem).map_err(|e| TlsError::BadKey {
        name: key.name.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|err| TlsError::Pair {
            cert: cert.name.to_owned(),
            key: key.name.to_owned(),
            reason: match err {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate".into()
                }
                err => err.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The PEM CA certificates of `path`, given by `flag`; an error names both when the file
/// cannot be read or holds no certificate.
pub fn read_ca_file(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use anyhow::Context;
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag} {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Makes [`provider`] the process default, for libraries (the Kubernetes client) that ask for it.
pub fn install_default_provider() {
    // Fails only if a provider is already installed, which is then the one we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source<'a>(name: &'a str, pem: &'a str) -> PemSource<'a> {
        PemSource {
            name,
            pem: pem.as_bytes(),
        }
    }

    #[test]
    fn every_bad_pair_is_named() {
        let a = crate::certs::generate(&["a".into()], &[], 1).unwrap();
        let b = crate::certs::generate(&["b".into()], &[], 1).unwrap();
        let cases = [
            (
                source("c", ""),
                source("k", &a.tls_key),
                "c holds no PEM certificate",
            ),
            (
                source("c", &a.tls_cert),
                source("k", "nope"),
                "k holds no usable PEM private key",
            ),
            (
                source("c", &a.tls_cert),
                source("k", &b.tls_key),
                "c and k do not form a usable pair",
            ),
        ];
        for (cert, key, message) in cases {
            let err = server_config_from_pem(&cert, &key).unwrap_err().to_string();
            assert!(err.starts_with(message), "{err}");
        }
        let config =
            server_config_from_pem(&source("c", &a.tls_cert), &source("k", &a.tls_key)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let missing = ReloadingConfig::load("/nonexistent/tls.crt", "/nonexistent/tls.key", |_| {});
        assert!(
            missing
                .err()
                .unwrap()
                .to_string()
                .starts_with("cannot read /nonexistent/tls.crt")
        );
    }
}
