//! A CA and a serving certificate signed by it (rcgen), for the webhook and for tests.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// File names written by [`write`].
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("give at least one --dns name or --ip address for the serving certificate")]
    NoNames,
    #[error("--dns {0:?} is not a valid DNS name")]
    BadDnsName(String),
    #[error("--days must be between 1 and 3650, got {0}")]
    BadDays(u32),
    #[error("{0} already exists; pass --force to overwrite")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// PEM text of a CA and a serving certificate and their keys.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub tls_cert: String,
    pub tls_key: String,
}

/// Generates an ECDSA P-256 CA and a serving certificate for `dns` and `ips`, valid `days`.
pub fn generate(dns: &[String], ips: &[IpAddr], days: u32) -> Result<Bundle, CertsError> {
    if dns.is_empty() && ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    if !(1..=3650).contains(&days) {
        return Err(CertsError::BadDays(days));
    }
    let now = time_now();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("irsa-webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::seconds(300);
    ca_params.not_after = now + time::Duration::days(2 * i64::from(days));
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = name(dns.first().map_or("irsa-webhook", String::as_str));
    params.subject_alt_names = dns
        .iter()
        .map(|d| {
            let ia5 = d
                .as_str()
                .try_into()
                .map_err(|_| CertsError::BadDnsName(d.clone()))?;
            if d.is_empty() || d.contains(' ') {
                return Err(CertsError::BadDnsName(d.clone()));
            }
            Ok(SanType::DnsName(ia5))
        })
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = ca_params.not_before;
    params.not_after = now + time::Duration::days(i64::from(days));
    let key = KeyPair::generate()?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer)?;

    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        tls_cert: cert.pem(),
        tls_key: key.serialize_pem(),
    })
}

impl Bundle {
    /// Writes the four PEM files into `dir` (keys mode 0600); refuses to overwrite unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, CertsError> {
        std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let files = [
            (CA_CERT, &self.ca_cert, 0o644),
            (CA_KEY, &self.ca_key, 0o600),
            (TLS_CERT, &self.tls_cert, 0o644),
            (TLS_KEY, &self.tls_key, 0o600),
        ];
        if !force
            && let Some(existing) = files
                .iter()
                .map(|(name, _, _)| dir.join(name))
                .find(|p| p.exists())
        {
            return Err(CertsError::Exists(existing));
        }
        files
            .iter()
            .map(|(name, pem, mode)| {
                let path = dir.join(name);
                crate::files::write_atomically(&path, pem.as_bytes(), *mode)
                    .map(|()| path.clone())
                    .map_err(|source| CertsError::Write { path, source })
            })
            .collect()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bad_inputs_are_named() {
        assert!(matches!(generate(&[], &[], 365), Err(CertsError::NoNames)));
        assert_eq!(
            generate(&["a b".into()], &[], 365).unwrap_err().to_string(),
            "--dns \"a b\" is not a valid DNS name"
        );
        assert!(matches!(
            generate(&["x".into()], &[], 0),
            Err(CertsError::BadDays(0))
        ));
    }

    #[test]
    fn writes_pem_files_with_private_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = generate(
            &["webhook.ns.svc".into()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        let written = bundle.write(dir.path(), false).unwrap();
        assert_eq!(written.len(), 4);
        for (file, mode) in [(CA_KEY, 0o600), (TLS_KEY, 0o600), (TLS_CERT, 0o644)] {
            let meta = std::fs::metadata(dir.path().join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
        }
        assert!(bundle.tls_key.contains("PRIVATE KEY"));
        let err = bundle.write(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        bundle.write(dir.path(), true).unwrap();
        // The pair is usable by our own TLS server.
        crate::tls::server_config(&dir.path().join(TLS_CERT), &dir.path().join(TLS_KEY)).unwrap();
    }
}
