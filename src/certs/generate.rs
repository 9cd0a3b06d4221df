//! A CA and a serving certificate signed by it (rcgen), for the webhook and for tests.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;

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
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("unreadable certificate: {0}")]
    Unreadable(String),
}

/// PEM text of a CA and a serving certificate and their keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub tls_cert: String,
    pub tls_key: String,
}

/// Generates an ECDSA P-256 CA (valid twice as long) and a serving certificate for `dns` and
/// `ips` signed by it, valid `days`.
pub fn generate(dns: &[String], ips: &[IpAddr], days: u32) -> Result<Bundle, CertsError> {
    check_request(dns, ips, days)?;
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("irsa-webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::seconds(300);
    ca_params.not_after = now + time::Duration::days(2 * i64::from(days));
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let (tls_cert, tls_key) = serving(&Issuer::from_params(&ca_params, &ca_key), dns, ips, days)?;
    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        tls_cert,
        tls_key,
    })
}

/// A new serving certificate signed by an existing CA; returns the bundle with that CA.
pub fn resign(
    ca_cert: &str,
    ca_key: &str,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<Bundle, CertsError> {
    check_request(dns, ips, days)?;
    let key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, &key)?;
    let (tls_cert, tls_key) = serving(&issuer, dns, ips, days)?;
    Ok(Bundle {
        ca_cert: ca_cert.to_owned(),
        ca_key: ca_key.to_owned(),
        tls_cert,
        tls_key,
    })
}

fn check_request(dns: &[String], ips: &[IpAddr], days: u32) -> Result<(), CertsError> {
    if dns.is_empty() && ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    if !(1..=3650).contains(&days) {
        return Err(CertsError::BadDays(days));
    }
    Ok(())
}

/// A `serverAuth` certificate for `dns` and `ips` and its new key, as PEM.
fn serving(
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<(String, String), CertsError> {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = name(dns.first().map_or("irsa-webhook", String::as_str));
    params.subject_alt_names = dns
        .iter()
        .map(|d| {
            if d.is_empty() || d.contains(' ') {
                return Err(CertsError::BadDnsName(d.clone()));
            }
            let ia5 = d
                .as_str()
                .try_into()
                .map_err(|_| CertsError::BadDnsName(d.clone()))?;
            Ok(SanType::DnsName(ia5))
        })
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::seconds(300);
    params.not_after = now + time::Duration::days(i64::from(days));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Validity, as Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
}

impl CertInfo {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, CertsError> {
        let bad = |reason: String| CertsError::Unreadable(reason);
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| bad("no PEM certificate".into()))?
            .map_err(|e| bad(e.to_string()))?;
        Self::from_der(&der)
    }

    /// Reads one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertsError> {
        let bad = |reason: String| CertsError::Unreadable(reason);
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            dns_names,
        })
    }

    /// True when less than a third of the validity is left at `now` (Unix seconds), or it has
    /// not started yet.
    pub fn needs_renewal(&self, now: i64) -> bool {
        let lifetime = self.not_after - self.not_before;
        now < self.not_before || self.not_after - now < lifetime / 3
    }
}

impl Bundle {
    /// Writes the four PEM files into `dir` (keys mode 0600); refuses to overwrite unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, CertsError> {
        std::fs::create_dir_all(dir).map_err(|cause| CertsError::Write {
            path: dir.to_owned(),
            cause,
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
                crate::serving::files::write_atomically(&path, pem.as_bytes(), *mode)
                    .map(|()| path.clone())
                    .map_err(|cause| CertsError::Write { path, cause })
            })
            .collect()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn resigning_keeps_the_ca() {
        let first = generate(&["a.svc".into()], &[], 30).unwrap();
        let second = resign(&first.ca_cert, &first.ca_key, &["b.svc".into()], &[], 30).unwrap();
        assert_eq!(second.ca_cert, first.ca_cert);
        assert_ne!(second.tls_cert, first.tls_cert);
        assert_eq!(
            CertInfo::from_pem(&second.tls_cert).unwrap().dns_names,
            ["b.svc"]
        );
        assert!(matches!(
            resign("garbage", &first.ca_key, &["b".into()], &[], 30),
            Err(CertsError::Generate(_))
        ));
        assert!(matches!(
            CertInfo::from_pem("garbage"),
            Err(CertsError::Unreadable(_))
        ));
    }

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
        let info = CertInfo::from_pem(&bundle.tls_cert).unwrap();
        assert_eq!(info.dns_names, ["webhook.ns.svc"]);
        assert_eq!(info.not_after - info.not_before, 30 * 86_400 + 300);
        assert!(!info.needs_renewal(info.not_before + 10 * 86_400));
        assert!(info.needs_renewal(info.not_after - 9 * 86_400));
        // The pair is usable by our own TLS server.
        crate::serving::tls::server_config(&dir.path().join(TLS_CERT), &dir.path().join(TLS_KEY))
            .unwrap();
    }
}
