//! Pure validation of what the API server answers and rendering of what we publish.
//!
//! Trailing slash: `--issuer-url` is published verbatim as `issuer`, and the API server's
//! `issuer` must equal it byte for byte. One that differs only by a trailing slash is still a
//! mismatch ([`DocumentError::IssuerTrailingSlash`]), because STS compares the token's `iss` with
//! the provider URL as plain strings. `jwks_uri` is the issuer without one trailing slash plus
//! `/openid/v1/jwks`, so `https://h` and `https://h/` both give `https://h/openid/v1/jwks`, as
//! the API server's own `path.Join` does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Largest body accepted from the API server for either document.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most keys accepted in a JWKS; the API server publishes a handful.
pub const MAX_KEYS: usize = 100;
/// Path of the discovery document below the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the JWKS below the issuer (and on the API server).
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Signature algorithms a published key may name, in the order they are listed.
pub const SUPPORTED_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
];
/// Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The public issuer URL, checked once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrl {
    url: String,
    /// Path of the issuer without a trailing slash, `""` for a bare host.
    path: String,
}

impl IssuerUrl {
    /// Accepts an `https://` URL without query, fragment or user information.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::Invalid {
            flag: "--issuer-url",
            value: value.to_owned(),
            reason,
        };
        let Some(rest) = value.strip_prefix("https://") else {
            return Err(invalid(
                "it must start with https:// because STS fetches the discovery document over HTTPS",
            ));
        };
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it must not contain spaces or control characters"));
        }
        if value.contains('?') {
            return Err(invalid("it must not have a query (?...)"));
        }
        if value.contains('#') {
            return Err(invalid("it must not have a fragment (#...)"));
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.contains('@') {
            return Err(invalid("it must not carry user information (user@)"));
        }
        if authority.is_empty() {
            return Err(invalid("it has no host"));
        }
        if path.contains("//") {
            return Err(invalid("its path must not have empty segments (//)"));
        }
        // RFC 3986 pchar: anything else would need percent-encoding, and `{`/`}` would also be
        // taken for route parameters.
        let pchar = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%/".contains(c);
        if !path.chars().all(pchar) {
            return Err(invalid(
                "its path holds characters that must be percent-encoded",
            ));
        }
        let uri: axum::http::Uri = value
            .parse()
            .map_err(|_| invalid("it is not a valid URL"))?;
        let host = uri.host().unwrap_or_default();
        let dns_or_ip = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        let ipv6 = host.starts_with('[') && host.ends_with(']');
        if host.is_empty() || !(ipv6 || host.chars().all(dns_or_ip)) {
            return Err(invalid("its host is not a DNS name or IP address"));
        }
        let port = authority.strip_prefix(host).unwrap_or(authority);
        if !(port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()))
        {
            return Err(invalid("its port is not a number from 0 to 65535"));
        }
        Ok(Self {
            url: value.to_owned(),
            path: path.strip_suffix('/').unwrap_or(path).to_owned(),
        })
    }

    /// The URL exactly as configured.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Path of the issuer without a trailing slash (`""` for a bare host), under which STS
    /// looks for both documents.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `<issuer without one trailing slash>/openid/v1/jwks`.
    pub fn jwks_uri(&self) -> String {
        let base = self.url.strip_suffix('/').unwrap_or(&self.url);
        format!("{base}{JWKS_PATH}")
    }
}

/// Which of the two documents a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discovery,
    Jwks,
}

impl Kind {
    /// The path of this document below the issuer.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Discovery => DISCOVERY_PATH,
            Kind::Jwks => JWKS_PATH,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Discovery => "the discovery document",
            Kind::Jwks => "the JWKS",
        })
    }
}

/// Why an answer of the API server is not published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("{0} is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge(Kind),
    #[error("{kind} is not a JSON object: {reason}")]
    NotJsonObject { kind: Kind, reason: String },
    #[error("the discovery document has no string \"issuer\"")]
    IssuerMissing,
    #[error(
        "the API server's issuer {fetched:?} differs from --issuer-url {configured:?} only by a trailing slash; STS compares issuers as exact strings, so make them identical"
    )]
    IssuerTrailingSlash { fetched: String, configured: String },
    #[error(
        "the API server's issuer {fetched:?} is not --issuer-url {configured:?}; STS would reject every token: set --issuer-url to the API server's --service-account-issuer"
    )]
    IssuerMismatch { fetched: String, configured: String },
    #[error("the JWKS has no \"keys\" array")]
    NoKeysArray,
    #[error("the JWKS has no keys; publishing it would make every token unverifiable")]
    NoKeys,
    #[error("the JWKS has {0} keys, more than {MAX_KEYS}")]
    TooManyKeys(usize),
    #[error(
        "{key} carries the private member \"{member}\"; the whole set is refused so private key material is never published"
    )]
    PrivateKey { key: String, member: &'static str },
    #[error("{0} has no \"kid\" (a non-empty string)")]
    MissingKid(String),
    #[error("kid {0:?} is used by more than one key")]
    DuplicateKid(String),
    #[error("{key}: {reason}")]
    BadKey { key: String, reason: String },
}

impl DocumentError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::NotJsonObject { .. } => "not_json",
            Self::IssuerMissing => "issuer_missing",
            Self::IssuerTrailingSlash { .. } | Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::NoKeysArray | Self::NoKeys | Self::TooManyKeys(_) => "bad_key_set",
            Self::PrivateKey { .. } => "private_key",
            Self::MissingKid(_) | Self::DuplicateKid(_) => "bad_kid",
            Self::BadKey { .. } => "bad_key",
        }
    }

    /// True for a misconfiguration that no later fetch of a healthy API server can fix.
    pub fn is_issuer_mismatch(&self) -> bool {
        matches!(
            self,
            Self::IssuerTrailingSlash { .. } | Self::IssuerMismatch { .. }
        )
    }
}

/// A validated public key with only the members we publish, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    kty: &'static str,
    kid: String,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    /// `alg`, or the algorithm the API server signs with for this key type when `alg` is absent.
    #[serde(skip)]
    signing_alg: &'static str,
}

impl PublicJwk {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The two documents as published: bodies and their strong ETags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    pub discovery: Rendered,
    pub jwks: Rendered,
    pub keys: usize,
}

/// One serialised document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    /// Quoted strong entity tag: base64url of the body's SHA-256.
    pub etag: String,
}

impl Rendered {
    fn new(body: Vec<u8>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest.as_ref()));
        Self { body, etag }
    }
}

/// Validates both answers of the API server and renders what we publish.
pub fn validate(
    issuer: &IssuerUrl,
    discovery: &[u8],
    jwks: &[u8],
) -> Result<Documents, DocumentError> {
    check_issuer(issuer, discovery)?;
    let keys = public_keys(jwks)?;
    Ok(render(issuer, &keys))
}

/// Checks that the API server's discovery document names our issuer.
pub fn check_issuer(issuer: &IssuerUrl, body: &[u8]) -> Result<(), DocumentError> {
    let doc = json_object(Kind::Discovery, body)?;
    let Some(Value::String(fetched)) = doc.get("issuer") else {
        return Err(DocumentError::IssuerMissing);
    };
    let configured = issuer.as_str();
    if fetched == configured {
        return Ok(());
    }
    let (fetched, configured) = (fetched.clone(), configured.to_owned());
    if fetched.trim_end_matches('/') == configured.trim_end_matches('/') {
        Err(DocumentError::IssuerTrailingSlash {
            fetched,
            configured,
        })
    } else {
        Err(DocumentError::IssuerMismatch {
            fetched,
            configured,
        })
    }
}

/// Parses a JWKS and keeps only the public members of each key; refuses the whole set on any
/// doubt, so a bad answer never replaces a good one.
pub fn public_keys(body: &[u8]) -> Result<Vec<PublicJwk>, DocumentError> {
    let doc = json_object(Kind::Jwks, body)?;
    let Some(Value::Array(keys)) = doc.get("keys") else {
        return Err(DocumentError::NoKeysArray);
    };
    if keys.is_empty() {
        return Err(DocumentError::NoKeys);
    }
    if keys.len() > MAX_KEYS {
        return Err(DocumentError::TooManyKeys(keys.len()));
    }
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, key)| public_key(i, key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut kids: Vec<&str> = keys.iter().map(PublicJwk::kid).collect();
    kids.sort_unstable();
    if let Some(pair) = kids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(DocumentError::DuplicateKid(pair[0].to_owned()));
    }
    Ok(keys)
}

/// Serialises the JWKS and our own discovery document.
pub fn render(issuer: &IssuerUrl, keys: &[PublicJwk]) -> Documents {
    #[derive(Serialize)]
    struct Discovery<'a> {
        issuer: &'a str,
        jwks_uri: &'a str,
        response_types_supported: [&'static str; 1],
        subject_types_supported: [&'static str; 1],
        id_token_signing_alg_values_supported: Vec<&'static str>,
        claims_supported: [&'static str; 2],
    }
    #[derive(Serialize)]
    struct JwkSet<'a> {
        keys: &'a [PublicJwk],
    }
    let mut algs: Vec<&'static str> = SUPPORTED_ALGS
        .into_iter()
        .filter(|alg| keys.iter().any(|k| k.signing_alg == *alg))
        .collect();
    if algs.is_empty() {
        algs.push("RS256");
    }
    let discovery = Discovery {
        issuer: issuer.as_str(),
        jwks_uri: &issuer.jwks_uri(),
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: algs,
        claims_supported: ["sub", "iss"],
    };
    Documents {
        discovery: Rendered::new(to_json(&discovery)),
        jwks: Rendered::new(to_json(&JwkSet { keys })),
        keys: keys.len(),
    }
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("structs of strings always serialise")
}

fn json_object(kind: Kind, body: &[u8]) -> Result<Map<String, Value>, DocumentError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DocumentError::TooLarge(kind));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DocumentError::NotJsonObject {
            kind,
            reason: "the top level is not an object".into(),
        }),
        Err(err) => Err(DocumentError::NotJsonObject {
            kind,
            reason: err.to_string(),
        }),
    }
}

fn public_key(index: usize, value: &Value) -> Result<PublicJwk, DocumentError> {
    let Some(key) = value.as_object() else {
        return Err(DocumentError::BadKey {
            key: format!("keys[{index}]"),
            reason: "not a JSON object".into(),
        });
    };
    let kid = match key.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Some(kid.as_str()),
        _ => None,
    };
    let label = match kid {
        Some(kid) => format!("keys[{index}] (kid {kid:?})"),
        None => format!("keys[{index}]"),
    };
    // Checked before anything else: whatever else is wrong, this is the one to report.
    if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| key.contains_key(*m)) {
        return Err(DocumentError::PrivateKey { key: label, member });
    }
    let Some(kid) = kid else {
        return Err(DocumentError::MissingKid(label));
    };
    let bad = |reason: String| DocumentError::BadKey {
        key: label.clone(),
        reason,
    };
    let text = |name: &str| match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("\"{name}\" is not a string"))),
    };
    let use_ = text("use")?;
    if let Some(use_) = use_.as_deref().filter(|u| *u != "sig") {
        return Err(bad(format!("use {use_:?} is not \"sig\"")));
    }
    let alg = text("alg")?;
    let declared = match alg.as_deref() {
        None => None,
        Some(alg) => Some(
            SUPPORTED_ALGS
                .into_iter()
                .find(|s| *s == alg)
                .ok_or_else(|| {
                    bad(format!(
                        "alg {alg:?} is not a supported signature algorithm ({})",
                        SUPPORTED_ALGS.join(", ")
                    ))
                })?,
        ),
    };
    let coordinate = |name: &str| -> Result<(String, usize), DocumentError> {
        let value = text(name)?.ok_or_else(|| bad(format!("\"{name}\" is missing")))?;
        let decoded = URL_SAFE_NO_PAD
            .decode(&value)
            .map_err(|_| bad(format!("\"{name}\" is not unpadded base64url")))?;
        if decoded.is_empty() {
            return Err(bad(format!("\"{name}\" is empty")));
        }
        Ok((value, decoded.len()))
    };
    let mut jwk = PublicJwk {
        kty: "",
        kid: kid.to_owned(),
        use_,
        alg,
        n: None,
        e: None,
        crv: None,
        x: None,
        y: None,
        signing_alg: "",
    };
    match text("kty")?.as_deref() {
        Some("RSA") => {
            if let Some(alg) = declared.filter(|a| !a.starts_with("RS") && !a.starts_with("PS")) {
                return Err(bad(format!("alg {alg:?} does not fit kty \"RSA\"")));
            }
            jwk.kty = "RSA";
            jwk.n = Some(coordinate("n")?.0);
            jwk.e = Some(coordinate("e")?.0);
            jwk.signing_alg = declared.unwrap_or("RS256");
        }
        Some("EC") => {
            let crv = text("crv")?.ok_or_else(|| bad("\"crv\" is missing".into()))?;
            let (size, curve_alg) = match crv.as_str() {
                "P-256" => (32, "ES256"),
                "P-384" => (48, "ES384"),
                "P-521" => (66, "ES512"),
                other => {
                    return Err(bad(format!(
                        "crv {other:?} is not supported (P-256, P-384 or P-521)"
                    )));
                }
            };
            if let Some(alg) = declared.filter(|a| *a != curve_alg) {
                return Err(bad(format!("alg {alg:?} does not fit crv {crv:?}")));
            }
            // RFC 7518 §6.2.1.2: a coordinate is always the full size for its curve.
            let sized = |name: &str| match coordinate(name)? {
                (value, len) if len == size => Ok(value),
                (_, len) => Err(bad(format!(
                    "\"{name}\" is {len} bytes; a {crv} coordinate is {size}"
                ))),
            };
            jwk.x = Some(sized("x")?);
            jwk.y = Some(sized("y")?);
            jwk.kty = "EC";
            jwk.crv = Some(crv);
            jwk.signing_alg = curve_alg;
        }
        Some(other) => {
            return Err(bad(format!("kty {other:?} is not supported (RSA or EC)")));
        }
        None => return Err(bad("\"kty\" is missing".into())),
    }
    Ok(jwk)
}

/// Rendered documents with one RSA key `kid`, for tests.
#[cfg(test)]
pub(crate) fn sample_documents(kid: &str) -> Documents {
    let jwks = format!(r#"{{"keys":[{{"kty":"RSA","kid":"{kid}","n":"AQAB","e":"AQAB"}}]}}"#);
    let issuer = IssuerUrl::parse("https://issuer.example").unwrap();
    render(&issuer, &public_keys(jwks.as_bytes()).unwrap())
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
