//! Every validation rule with the message it produces, and the exact bytes we publish.

use super::*;
use serde_json::json;

const ISSUER: &str = "https://oidc.example.com";

fn issuer(url: &str) -> IssuerUrl {
    IssuerUrl::parse(url).unwrap()
}

fn b64(len: usize, fill: u8) -> String {
    URL_SAFE_NO_PAD.encode(vec![fill; len])
}

fn rsa(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(256, 0xa5), "e": "AQAB"})
}

fn ec(kid: &str, crv: &str, size: usize) -> Value {
    json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64(size, 1), "y": b64(size, 2)})
}

fn jwks(keys: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn discovery(issuer: &str) -> Vec<u8> {
    // What a real API server answers: no claims_supported, its own jwks_uri.
    serde_json::to_vec(&json!({
        "issuer": issuer,
        "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .unwrap()
}

/// The message of the error for one key, or panics when the key is accepted.
fn key_error(key: Value) -> String {
    public_keys(&jwks(vec![key])).unwrap_err().to_string()
}

#[test]
fn issuer_url_accepts_https_hosts_ports_and_paths() {
    for (url, path, jwks_uri) in [
        (
            "https://oidc.example.com",
            "",
            "https://oidc.example.com/openid/v1/jwks",
        ),
        (
            "https://oidc.example.com/",
            "",
            "https://oidc.example.com/openid/v1/jwks",
        ),
        (
            "https://h.example:8443/clusters/prod",
            "/clusters/prod",
            "https://h.example:8443/clusters/prod/openid/v1/jwks",
        ),
        (
            "https://h.example/clusters/prod/",
            "/clusters/prod",
            "https://h.example/clusters/prod/openid/v1/jwks",
        ),
        ("https://127.0.0.1", "", "https://127.0.0.1/openid/v1/jwks"),
        (
            "https://[::1]:8443",
            "",
            "https://[::1]:8443/openid/v1/jwks",
        ),
        (
            "https://h.example/a%20b/~c",
            "/a%20b/~c",
            "https://h.example/a%20b/~c/openid/v1/jwks",
        ),
    ] {
        let parsed = issuer(url);
        assert_eq!(parsed.as_str(), url, "used verbatim");
        assert_eq!(parsed.path(), path, "{url}");
        assert_eq!(parsed.jwks_uri(), jwks_uri, "{url}");
    }
}

#[test]
fn issuer_url_refuses_each_bad_form_with_its_reason() {
    for (url, reason) in [
        (
            "http://oidc.example.com",
            "it must start with https:// because STS fetches the discovery document over HTTPS",
        ),
        (
            "oidc.example.com",
            "it must start with https:// because STS fetches the discovery document over HTTPS",
        ),
        (
            "HTTPS://oidc.example.com",
            "it must start with https:// because STS fetches the discovery document over HTTPS",
        ),
        (
            "https://oidc.example.com?x=1",
            "it must not have a query (?...)",
        ),
        (
            "https://oidc.example.com/#top",
            "it must not have a fragment (#...)",
        ),
        (
            "https://user:pw@oidc.example.com",
            "it must not carry user information (user@)",
        ),
        ("https://", "it has no host"),
        ("https:///path", "it has no host"),
        (
            "https://oidc.example.com//x",
            "its path must not have empty segments (//)",
        ),
        (
            "https://oidc.example.com/a b",
            "it must not contain spaces or control characters",
        ),
        (
            "https://oidc.example.com:port",
            "its port is not a number from 0 to 65535",
        ),
        (
            "https://oidc.example.com:70000",
            "its port is not a number from 0 to 65535",
        ),
        (
            "https://oidc_example!.com",
            "its host is not a DNS name or IP address",
        ),
        (
            "https://oidc.example.com/{cluster}",
            "its path holds characters that must be percent-encoded",
        ),
        ("https://[::1", "it is not a valid URL"),
    ] {
        let err = IssuerUrl::parse(url).unwrap_err().to_string();
        assert_eq!(err, format!("--issuer-url {url:?} is invalid: {reason}"));
    }
}

#[test]
fn issuer_equal_to_the_configured_url_is_accepted_verbatim() {
    for url in [ISSUER, "https://oidc.example.com/", "https://h/p"] {
        check_issuer(&issuer(url), &discovery(url)).unwrap();
    }
}

#[test]
fn issuer_differing_only_by_a_trailing_slash_is_a_mismatch_that_says_so() {
    let err = check_issuer(&issuer(ISSUER), &discovery("https://oidc.example.com/")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the API server's issuer \"https://oidc.example.com/\" differs from --issuer-url \
         \"https://oidc.example.com\" only by a trailing slash; STS compares issuers as exact \
         strings, so make them identical"
    );
    assert_eq!(err.reason(), "issuer_mismatch");
    assert!(err.is_issuer_mismatch());
    let err = check_issuer(&issuer("https://oidc.example.com/"), &discovery(ISSUER)).unwrap_err();
    assert!(
        matches!(err, DocumentError::IssuerTrailingSlash { .. }),
        "{err}"
    );
}

#[test]
fn other_issuer_is_a_mismatch_naming_both() {
    let err = check_issuer(
        &issuer(ISSUER),
        &discovery("https://kubernetes.default.svc"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the API server's issuer \"https://kubernetes.default.svc\" is not --issuer-url \
         \"https://oidc.example.com\"; STS would reject every token: set --issuer-url to the API \
         server's --service-account-issuer"
    );
    assert!(err.is_issuer_mismatch());
    // Case differs: STS would not match it either.
    let err = check_issuer(&issuer(ISSUER), &discovery("https://OIDC.example.com")).unwrap_err();
    assert!(matches!(err, DocumentError::IssuerMismatch { .. }), "{err}");
}

#[test]
fn discovery_document_without_a_string_issuer_is_refused() {
    for body in [json!({}), json!({"issuer": 7}), json!({"issuer": null})] {
        let err = check_issuer(&issuer(ISSUER), &serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the discovery document has no string \"issuer\""
        );
        assert_eq!(err.reason(), "issuer_missing");
        assert!(!err.is_issuer_mismatch());
    }
}

#[test]
fn garbage_and_non_objects_are_refused_with_the_parser_reason() {
    let err = check_issuer(&issuer(ISSUER), b"<html>502 Bad Gateway</html>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the discovery document is not a JSON object: expected value at line 1 column 1"
    );
    assert_eq!(err.reason(), "not_json");
    let err = public_keys(b"[1,2]").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the JWKS is not a JSON object: the top level is not an object"
    );
    let err = public_keys(b"").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the JWKS is not a JSON object: EOF while parsing a value at line 1 column 0"
    );
}

#[test]
fn bodies_over_one_mebibyte_are_refused_before_parsing() {
    let mut big = jwks(vec![rsa("a")]);
    big.resize(MAX_BODY_BYTES + 1, b' ');
    let err = public_keys(&big).unwrap_err();
    assert_eq!(err.to_string(), "the JWKS is larger than 1048576 bytes");
    assert_eq!(err.reason(), "too_large");
    let err = check_issuer(&issuer(ISSUER), &big).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the discovery document is larger than 1048576 bytes"
    );
    // Exactly at the limit is fine (trailing JSON whitespace is allowed).
    big.truncate(MAX_BODY_BYTES);
    assert_eq!(public_keys(&big).unwrap().len(), 1);
}

#[test]
fn key_set_shape_is_checked() {
    for (body, message) in [
        (json!({}), "the JWKS has no \"keys\" array"),
        (json!({"keys": {}}), "the JWKS has no \"keys\" array"),
        (
            json!({"keys": []}),
            "the JWKS has no keys; publishing it would make every token unverifiable",
        ),
    ] {
        let err = public_keys(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.reason(), "bad_key_set");
    }
    let many = (0..=MAX_KEYS).map(|i| rsa(&format!("k{i}"))).collect();
    let err = public_keys(&jwks(many)).unwrap_err();
    assert_eq!(err.to_string(), "the JWKS has 101 keys, more than 100");
    let exactly = (0..MAX_KEYS).map(|i| rsa(&format!("k{i}"))).collect();
    assert_eq!(public_keys(&jwks(exactly)).unwrap().len(), MAX_KEYS);
    assert_eq!(key_error(json!("RSA")), "keys[0]: not a JSON object");
}

#[test]
fn any_private_member_refuses_the_whole_set_naming_the_kid() {
    for member in PRIVATE_MEMBERS {
        let mut key = rsa("signing-2024");
        key[member] = json!("c2VjcmV0");
        let err = public_keys(&jwks(vec![rsa("good"), key])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "keys[1] (kid \"signing-2024\") carries the private member \"{member}\"; the \
                 whole set is refused so private key material is never published"
            )
        );
        assert_eq!(err.reason(), "private_key");
    }
    // Reported even when the key is otherwise broken, and without a kid by position.
    let err = key_error(json!({"kty": "oct", "k": "c2VjcmV0"}));
    assert_eq!(
        err,
        "keys[0] carries the private member \"k\"; the whole set is refused so private key \
         material is never published"
    );
    // An explicit null is still a private member present.
    let mut key = ec("e", "P-256", 32);
    key["d"] = Value::Null;
    assert!(key_error(key).contains("private member \"d\""));
}

#[test]
fn kid_must_be_a_unique_non_empty_string() {
    let mut no_kid = rsa("x");
    no_kid.as_object_mut().unwrap().remove("kid");
    for (key, message) in [
        (no_kid, "keys[0] has no \"kid\" (a non-empty string)"),
        (rsa(""), "keys[0] has no \"kid\" (a non-empty string)"),
        (
            json!({"kty": "RSA", "kid": 5, "n": "AQAB", "e": "AQAB"}),
            "keys[0] has no \"kid\" (a non-empty string)",
        ),
    ] {
        assert_eq!(key_error(key), message);
    }
    let err = public_keys(&jwks(vec![rsa("a"), ec("b", "P-256", 32), rsa("a")])).unwrap_err();
    assert_eq!(err.to_string(), "kid \"a\" is used by more than one key");
    assert_eq!(err.reason(), "bad_kid");
}

#[test]
fn use_must_be_sig_and_alg_a_supported_signature_algorithm() {
    let with = |member: &str, value: Value| {
        let mut key = rsa("k1");
        key[member] = value;
        key_error(key)
    };
    assert_eq!(
        with("use", json!("enc")),
        "keys[0] (kid \"k1\"): use \"enc\" is not \"sig\""
    );
    assert_eq!(
        with("use", json!(["sig"])),
        "keys[0] (kid \"k1\"): \"use\" is not a string"
    );
    for alg in ["HS256", "none", "RSA-OAEP", "rs256", "EdDSA"] {
        assert_eq!(
            with("alg", json!(alg)),
            format!(
                "keys[0] (kid \"k1\"): alg {alg:?} is not a supported signature algorithm \
                 (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512)"
            )
        );
    }
    assert_eq!(
        with("alg", json!("ES256")),
        "keys[0] (kid \"k1\"): alg \"ES256\" does not fit kty \"RSA\""
    );
    let mut key = ec("k2", "P-256", 32);
    key["alg"] = json!("ES384");
    assert_eq!(
        key_error(key),
        "keys[0] (kid \"k2\"): alg \"ES384\" does not fit crv \"P-256\""
    );
    let mut key = ec("k3", "P-256", 32);
    key["alg"] = json!("RS256");
    assert!(key_error(key).contains("alg \"RS256\" does not fit crv \"P-256\""));
}

#[test]
fn only_rsa_and_ec_keys_with_well_formed_members_are_accepted() {
    let cases = [
        (
            json!({"kid": "k", "n": "AQAB", "e": "AQAB"}),
            "\"kty\" is missing",
        ),
        (
            json!({"kty": "OKP", "kid": "k", "crv": "Ed25519", "x": "AQAB"}),
            "kty \"OKP\" is not supported (RSA or EC)",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "e": "AQAB"}),
            "\"n\" is missing",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "n": "AQAB"}),
            "\"e\" is missing",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "n": "", "e": "AQAB"}),
            "\"n\" is empty",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "n": "AQ==", "e": "AQAB"}),
            "\"n\" is not unpadded base64url",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "n": "ab+/", "e": "AQAB"}),
            "\"n\" is not unpadded base64url",
        ),
        (
            json!({"kty": "RSA", "kid": "k", "n": "AQAB", "e": 65537}),
            "\"e\" is not a string",
        ),
        (
            json!({"kty": "EC", "kid": "k", "x": b64(32, 1), "y": b64(32, 2)}),
            "\"crv\" is missing",
        ),
        (
            json!({"kty": "EC", "kid": "k", "crv": "P-192", "x": "AQAB", "y": "AQAB"}),
            "crv \"P-192\" is not supported (P-256, P-384 or P-521)",
        ),
        (
            json!({"kty": "EC", "kid": "k", "crv": "secp256k1", "x": "AQAB", "y": "AQAB"}),
            "crv \"secp256k1\" is not supported (P-256, P-384 or P-521)",
        ),
        (
            json!({"kty": "EC", "kid": "k", "crv": "P-256", "x": b64(31, 1), "y": b64(32, 2)}),
            "\"x\" is 31 bytes; a P-256 coordinate is 32",
        ),
        (
            json!({"kty": "EC", "kid": "k", "crv": "P-521", "x": b64(66, 1)}),
            "\"y\" is missing",
        ),
        (
            json!({"kty": "EC", "kid": "k", "crv": "P-384", "x": b64(48, 1), "y": "*"}),
            "\"y\" is not unpadded base64url",
        ),
    ];
    for (key, reason) in cases {
        let err = public_keys(&jwks(vec![key])).unwrap_err();
        assert_eq!(err.to_string(), format!("keys[0] (kid \"k\"): {reason}"));
        assert_eq!(err.reason(), "bad_key");
    }
}

#[test]
fn published_jwks_keeps_only_public_members_in_a_fixed_order() {
    let mut key = rsa("rsa-1");
    key["x5c"] = json!(["MIIB..."]);
    key["key_ops"] = json!(["verify"]);
    key["ext"] = json!(true);
    // Members in another order than ours.
    let ec_key =
        json!({"y": b64(32, 2), "x": b64(32, 1), "crv": "P-256", "kid": "ec-1", "kty": "EC"});
    let mut upstream = json!({"keys": [key, ec_key]});
    upstream["extra"] = json!("top-level members are dropped too");
    let keys = public_keys(&serde_json::to_vec(&upstream).unwrap()).unwrap();
    let docs = render(&issuer(ISSUER), &keys);
    let expected = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"{}","e":"AQAB"}},{{"kty":"EC","kid":"ec-1","crv":"P-256","x":"{}","y":"{}"}}]}}"#,
        b64(256, 0xa5),
        b64(32, 1),
        b64(32, 2)
    );
    assert_eq!(String::from_utf8(docs.jwks.body).unwrap(), expected);
    assert_eq!(docs.keys, 2);
}

#[test]
fn discovery_document_is_rendered_from_the_issuer_and_the_keys() {
    let docs = validate(&issuer(ISSUER), &discovery(ISSUER), &jwks(vec![rsa("a")])).unwrap();
    assert_eq!(
        String::from_utf8(docs.discovery.body).unwrap(),
        r#"{"issuer":"https://oidc.example.com","jwks_uri":"https://oidc.example.com/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"],"claims_supported":["sub","iss"]}"#
    );
    let slash = "https://oidc.example.com/";
    let docs = validate(&issuer(slash), &discovery(slash), &jwks(vec![rsa("a")])).unwrap();
    let doc: Value = serde_json::from_slice(&docs.discovery.body).unwrap();
    assert_eq!(doc["issuer"], slash);
    assert_eq!(doc["jwks_uri"], "https://oidc.example.com/openid/v1/jwks");
}

#[test]
fn signing_algorithms_come_from_the_keys_in_a_stable_order() {
    let algs = |keys: Vec<Value>| {
        let docs = render(&issuer(ISSUER), &public_keys(&jwks(keys)).unwrap());
        let doc: Value = serde_json::from_slice(&docs.discovery.body).unwrap();
        doc["id_token_signing_alg_values_supported"].clone()
    };
    let mut bare_rsa = rsa("r");
    bare_rsa.as_object_mut().unwrap().remove("alg");
    assert_eq!(
        algs(vec![bare_rsa]),
        json!(["RS256"]),
        "RSA defaults to RS256"
    );
    assert_eq!(
        algs(vec![ec("e", "P-384", 48)]),
        json!(["ES384"]),
        "EC follows its curve"
    );
    assert_eq!(algs(vec![ec("e", "P-521", 66)]), json!(["ES512"]));
    let mut ps = rsa("p");
    ps["alg"] = json!("PS256");
    assert_eq!(
        algs(vec![ec("e", "P-256", 32), ps, rsa("r"), rsa("r2")]),
        json!(["RS256", "PS256", "ES256"])
    );
}

#[test]
fn etag_is_a_quoted_hash_of_the_body() {
    let a = validate(&issuer(ISSUER), &discovery(ISSUER), &jwks(vec![rsa("a")])).unwrap();
    let again = validate(&issuer(ISSUER), &discovery(ISSUER), &jwks(vec![rsa("a")])).unwrap();
    let b = validate(&issuer(ISSUER), &discovery(ISSUER), &jwks(vec![rsa("b")])).unwrap();
    assert_eq!(a, again);
    assert_ne!(a.jwks.etag, b.jwks.etag);
    assert_eq!(
        a.discovery.etag, b.discovery.etag,
        "same algorithms, same document"
    );
    assert_eq!(a.jwks.etag.len(), 45);
    assert!(a.jwks.etag.starts_with('"') && a.jwks.etag.ends_with('"'));
}

#[test]
fn issuer_is_checked_before_the_keys() {
    let err = validate(
        &issuer(ISSUER),
        &discovery("https://other"),
        &jwks(vec![rsa("a"), rsa("a")]),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "issuer_mismatch");
}
