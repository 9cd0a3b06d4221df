//! Signing keys read from the files kube-apiserver is given as `--service-account-key-file`,
//! turned into the JWKS kube-apiserver itself publishes for them: the same `kid` (base64url of
//! the SHA-256 of the key's PKIX DER encoding, as kube-apiserver derives it), `alg`, `use` and
//! public members. Private keys are read only for their public half; no private member leaves.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// Most bytes one key file may have.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("cannot read --key-file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("--key-file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("--key-file {path} is not PEM: {reason}")]
    NotPem { path: PathBuf, reason: String },
    #[error(
        "--key-file {path}: PEM block {index} ({label}) is not an RSA or ECDSA (P-256, P-384, P-521) key: {reason}"
    )]
    BadKey {
        path: PathBuf,
        index: usize,
        label: String,
        reason: String,
    },
    #[error("--key-file {path} holds no RSA or ECDSA key")]
    NoKey { path: PathBuf },
}

/// A public key as kube-apiserver publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: String,
    value: Value,
}

/// Reads every file and returns the JWKS body (`{"keys": [...]}`) for all their keys, in file
/// and block order, a key given twice published once.
pub fn read(paths: &[PathBuf]) -> Result<Vec<u8>, KeyFileError> {
    let mut keys: Vec<Jwk> = Vec::new();
    for path in paths {
        for key in parse(path, &read_file(path)?)? {
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
    }
    let values: Vec<&Value> = keys.iter().map(|k| &k.value).collect();
    Ok(serde_json::to_vec(&json!({ "keys": values })).expect("JSON values serialise"))
}

fn read_file(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    use std::io::Read;
    let failed = |e: std::io::Error| KeyFileError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(failed)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// The keys of one PEM file. Blocks that are not keys (`EC PARAMETERS`, say) are skipped, as
/// kube-apiserver skips them; a key block that does not parse is an error.
fn parse(path: &Path, pem: &[u8]) -> Result<Vec<Jwk>, KeyFileError> {
    let mut keys = Vec::new();
    for (index, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| KeyFileError::NotPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let bad = |reason: String| KeyFileError::BadKey {
            path: path.to_owned(),
            index: index + 1,
            label: block.label.clone(),
            reason,
        };
        let key = match block.label.as_str() {
            "PUBLIC KEY" => from_spki(&block.contents),
            "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_der(&block.contents)
                .map(|k| rsa_jwk(&k))
                .map_err(|e| e.to_string()),
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&block.contents)
                .map(|k| rsa_jwk(&k.to_public_key()))
                .map_err(|e| e.to_string()),
            "PRIVATE KEY" => from_pkcs8(&block.contents),
            "EC PRIVATE KEY" => from_sec1(&block.contents),
            "CERTIFICATE" => x509_parser::parse_x509_certificate(&block.contents)
                .map_err(|e| e.to_string())
                .and_then(|(_, cert)| from_spki(cert.public_key().raw)),
            other => {
                tracing::debug!(path = %path.display(), block = other, "skipping a PEM block that is not a key");
                continue;
            }
        };
        keys.push(key.map_err(bad)?);
    }
    if keys.is_empty() {
        return Err(KeyFileError::NoKey {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

fn from_spki(der: &[u8]) -> Result<Jwk, String> {
    if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(der) {
        return Ok(rsa_jwk(&key));
    }
    if let Ok(key) = p256::PublicKey::from_public_key_der(der) {
        return ec_jwk(&key, "P-256", "ES256");
    }
    if let Ok(key) = p384::PublicKey::from_public_key_der(der) {
        return ec_jwk(&key, "P-384", "ES384");
    }
    p521::PublicKey::from_public_key_der(der)
        .map_err(|e| e.to_string())
        .and_then(|key| ec_jwk(&key, "P-521", "ES512"))
}

fn from_pkcs8(der: &[u8]) -> Result<Jwk, String> {
    if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        return Ok(rsa_jwk(&key.to_public_key()));
    }
    if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        return ec_jwk(&key.public_key(), "P-256", "ES256");
    }
    if let Ok(key) = p384::SecretKey::from_pkcs8_der(der) {
        return ec_jwk(&key.public_key(), "P-384", "ES384");
    }
    p521::SecretKey::from_pkcs8_der(der)
        .map_err(|e| e.to_string())
        .and_then(|key| ec_jwk(&key.public_key(), "P-521", "ES512"))
}

fn from_sec1(der: &[u8]) -> Result<Jwk, String> {
    if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
        return ec_jwk(&key.public_key(), "P-256", "ES256");
    }
    if let Ok(key) = p384::SecretKey::from_sec1_der(der) {
        return ec_jwk(&key.public_key(), "P-384", "ES384");
    }
    p521::SecretKey::from_sec1_der(der)
        .map_err(|e| e.to_string())
        .and_then(|key| ec_jwk(&key.public_key(), "P-521", "ES512"))
}

/// kube-apiserver's key id: base64url (no padding) of SHA-256 over the PKIX DER encoding.
fn kid(spki_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, spki_der))
}

fn rsa_jwk(key: &rsa::RsaPublicKey) -> Jwk {
    let der = key
        .to_public_key_der()
        .expect("a parsed RSA public key encodes");
    let kid = kid(der.as_bytes());
    let value = json!({
        "use": "sig",
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    Jwk { kid, value }
}

fn ec_jwk<C>(key: &elliptic_curve::PublicKey<C>, crv: &str, alg: &str) -> Result<Jwk, String>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::pkcs8::AssociatedOid,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    use elliptic_curve::sec1::ToEncodedPoint;
    let der = key.to_public_key_der().map_err(|e| e.to_string())?;
    let point = key.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err("the point at infinity is not a key".into());
    };
    let kid = kid(der.as_bytes());
    let value = json!({
        "use": "sig",
        "kty": "EC",
        "kid": kid,
        "crv": crv,
        "alg": alg,
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    });
    Ok(Jwk { kid, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key ids `openssl pkey -pubin -outform DER | sha256 | base64url` gives for the fixtures.
    const RSA_KID: &str = "BSnjlzDAVJVPnDyx77qMGWdDqvs75bYcH6wIjruouBg";
    const EC384_KID: &str = "tBOYL0FvGC2-KFs49fJxfUPFAr6AcyWccUC7OBJAEyM";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/discovery/testdata")
            .join(name)
    }

    fn keys(names: &[&str]) -> Vec<Value> {
        let paths: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
        let body: Value = serde_json::from_slice(&read(&paths).unwrap()).unwrap();
        body["keys"].as_array().unwrap().clone()
    }

    #[test]
    fn every_form_of_a_key_gives_kube_apiservers_kid_and_only_public_members() {
        for name in [
            "rsa-pkix.pub",
            "rsa-pkcs1.pub",
            "rsa-pkcs1.key",
            "rsa-pkcs8.key",
        ] {
            let keys = keys(&[name]);
            assert_eq!(keys.len(), 1, "{name}");
            let key = keys[0].as_object().unwrap();
            assert_eq!(key["kid"], RSA_KID, "{name}");
            assert_eq!(
                (&key["kty"], &key["alg"], &key["use"]),
                (&json!("RSA"), &json!("RS256"), &json!("sig"))
            );
            assert_eq!(key["e"], "AQAB");
            let members: Vec<&str> = key.keys().map(String::as_str).collect();
            assert_eq!(members, ["use", "kty", "kid", "alg", "n", "e"], "{name}");
        }
        for name in ["ec384.pub", "ec384-sec1.key"] {
            let key = &keys(&[name])[0];
            assert_eq!(key["kid"], EC384_KID, "{name}");
            assert_eq!(
                (&key["crv"], &key["alg"]),
                (&json!("P-384"), &json!("ES384"))
            );
            assert_eq!(
                URL_SAFE_NO_PAD
                    .decode(key["x"].as_str().unwrap())
                    .unwrap()
                    .len(),
                48
            );
            assert!(key.get("d").is_none(), "{name}");
        }
    }

    #[test]
    fn keys_of_several_files_in_order_and_a_repeated_key_once() {
        let keys = keys(&["ec384.pub", "rsa-pkcs1.key", "rsa-pkix.pub"]);
        let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, [EC384_KID, RSA_KID]);
        // What the refresh loop validates: the set passes the same checks as a fetched one.
        let body = read(&[fixture("rsa-pkcs1.key"), fixture("ec384.pub")]).unwrap();
        assert_eq!(
            crate::discovery::document::public_keys(&body)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let missing = dir.path().join("missing.pem");
        assert!(matches!(read(&[missing]), Err(KeyFileError::Read { .. })));
        let empty = write("empty.pem", "");
        assert_eq!(
            read(std::slice::from_ref(&empty)),
            Err(KeyFileError::NoKey { path: empty })
        );
        let only_params = write(
            "params.pem",
            "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n",
        );
        assert!(matches!(
            read(&[only_params]),
            Err(KeyFileError::NoKey { .. })
        ));
        let garbage = write(
            "bad.pem",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        );
        let err = read(&[garbage]).unwrap_err().to_string();
        assert!(
            err.contains("PEM block 1 (PUBLIC KEY) is not an RSA or ECDSA"),
            "{err}"
        );
        let big = write("big.pem", &"x".repeat(MAX_FILE_BYTES as usize + 1));
        assert!(matches!(read(&[big]), Err(KeyFileError::TooLarge { .. })));
    }
}
