//! The parts of a ServiceAccount token `doctor` compares, read without verifying the signature
//! (the checks compare the signing key's id with the published keys instead). Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Why a token could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is not three base64url parts separated by dots")]
    Shape,
    #[error("the token's {0} is not base64url-encoded JSON")]
    Part(&'static str),
}

/// Header and claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    kid: Option<String>,
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Audience,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

/// Reads header and claims.
pub fn read(token: &str) -> Result<Token, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let header: Header = decode(header).ok_or(JwtError::Part("header"))?;
    let claims: Claims = decode(claims).ok_or(JwtError::Part("claims"))?;
    Ok(Token {
        kid: header.kid,
        alg: header.alg,
        iss: claims.iss,
        sub: claims.sub,
        aud: match claims.aud {
            Audience::One(one) => vec![one],
            Audience::Many(many) => many,
            Audience::None => Vec::new(),
        },
    })
}

fn decode<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn header_and_claims_are_read_with_one_or_many_audiences() {
        let token = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"RS256","kid":"k1"}"#),
            encode(r#"{"iss":"https://i","sub":"system:serviceaccount:a:b","aud":"sts"}"#)
        );
        let read = read(&token).unwrap();
        assert_eq!(read.kid.as_deref(), Some("k1"));
        assert_eq!(read.iss.as_deref(), Some("https://i"));
        assert_eq!(read.aud, ["sts"]);
        let many = format!("{}.{}.s", encode("{}"), encode(r#"{"aud":["a","b"]}"#));
        assert_eq!(super::read(&many).unwrap().aud, ["a", "b"]);
    }

    #[test]
    fn malformed_tokens_are_named() {
        assert_eq!(read("a.b"), Err(JwtError::Shape));
        assert_eq!(read("a.b.c.d"), Err(JwtError::Shape));
        assert_eq!(read("!!.b.c"), Err(JwtError::Part("header")));
        let bad_claims = format!("{}.{}.s", encode("{}"), encode("[1]"));
        assert_eq!(read(&bad_claims), Err(JwtError::Part("claims")));
    }
}
