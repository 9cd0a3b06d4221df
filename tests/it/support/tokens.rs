//! Tokens minted by the API server for a pod's ServiceAccount, verified as STS would.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

/// A TokenRequest for `sa`, bound to `pod`, with the injected volume's audience and lifetime.
pub async fn request_token(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    pod: &Value,
    audience: &str,
    expiration: i64,
) -> String {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": [audience],
            "expirationSeconds": expiration,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
        },
    });
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    let answer: Value = serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
    answer["status"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// The API server's `/openid/v1/jwks`.
pub async fn jwks(client: &kube::Client) -> JwkSet {
    let request = http::Request::get("/openid/v1/jwks")
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap()
}

/// Verifies signature, `iss`, `aud` and `exp` of `token` against `jwks`; returns the claims.
pub fn verify(token: &str, jwks: &JwkSet, issuer: &str, audience: &str) -> Value {
    let header = decode_header(token).unwrap();
    let kid = header.kid.as_deref().expect("the token names its key");
    let jwk = jwks
        .find(kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}
