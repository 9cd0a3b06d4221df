//! The issuer chain as STS walks it: the API server's issuer and keys, a token it mints for the
//! ServiceAccount, the public discovery documents, and whether they all agree.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::compare::{invisible, issuer_difference};
use super::jwt::{self, Token};
use super::report::{Check, Report};
use crate::discovery::document::{
    DISCOVERY_PATH, IssuerUrl, MAX_BODY_BYTES, check_issuer, public_keys,
};
use crate::discovery::source::ApiServer;
use crate::serving::errors::chain;
use crate::serving::probe::{self, Roots, Seen};

/// Slower than this, a public document is worth a warning.
const SLOW: Duration = Duration::from_secs(1);
/// STS gives up on the discovery endpoint after about this long.
const STS_LIMIT: Duration = Duration::from_secs(5);

/// Whose token is checked.
#[derive(Debug, Clone)]
pub struct Subject {
    pub namespace: String,
    pub service_account: String,
    /// The audience the webhook injects for this ServiceAccount.
    pub audience: String,
}

/// What the API server says about itself.
#[derive(Debug, Clone)]
pub struct ApiSide {
    pub issuer: String,
    pub kids: Vec<String>,
}

/// A token the API server minted for the subject.
#[derive(Debug, Clone)]
pub struct Minted {
    pub raw: String,
    pub token: Token,
}

/// What the public issuer URL serves.
#[derive(Debug, Clone)]
pub struct PublicSide {
    pub kids: Vec<String>,
    pub seen: Seen,
}

/// `issuer.api-server`: the API server's own discovery document and JWKS.
pub async fn api_server(api: &ApiServer, report: &mut Report) -> Option<ApiSide> {
    const ID: &str = "issuer.api-server";
    let discovery = match api.fetch(DISCOVERY_PATH).await {
        Ok(body) => body,
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!("the API server's discovery document: {e}"),
                "start kube-apiserver with an https --service-account-issuer and grant this identity the system:service-account-issuer-discovery ClusterRole",
            ));
            return None;
        }
    };
    let Some(issuer) = serde_json::from_slice::<Value>(&discovery)
        .ok()
        .and_then(|d| d["issuer"].as_str().map(str::to_owned))
    else {
        report.push(Check::fail(
            ID,
            "the API server's discovery document has no issuer",
            "check kube-apiserver's --service-account-issuer",
        ));
        return None;
    };
    let jwks_path = crate::discovery::document::JWKS_PATH;
    let kids = match api.fetch(jwks_path).await.map(|b| public_keys(&b)) {
        Ok(Ok(keys)) => keys.iter().map(|k| k.kid().to_owned()).collect(),
        Ok(Err(e)) => {
            report.push(Check::fail(
                ID,
                format!("the API server's JWKS: {e}"),
                "check kube-apiserver's --service-account-key-file",
            ));
            return None;
        }
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!("the API server's JWKS: {e}"),
                "grant this identity the system:service-account-issuer-discovery ClusterRole",
            ));
            return None;
        }
    };
    report.push(Check::ok(
        ID,
        format!("the API server's issuer is {issuer}, signing keys {kids:?}"),
    ));
    Some(ApiSide { issuer, kids })
}

/// `issuer.token`: mints a token for the subject with the TokenRequest API and compares its
/// `iss` and `aud`.
pub async fn mint(
    client: &kube::Client,
    subject: &Subject,
    api: Option<&ApiSide>,
    report: &mut Report,
) -> Option<Minted> {
    const ID: &str = "issuer.token";
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &subject.namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [subject.audience], "expirationSeconds": 600}
    }))
    .expect("a valid TokenRequest");
    let answer = accounts
        .create_subresource::<TokenRequest, TokenRequest>(
            "token",
            &subject.service_account,
            &PostParams::default(),
            &request,
        )
        .await;
    let raw = match answer {
        Ok(answer) => answer.status.and_then(|s| s.token).unwrap_or_default(),
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!(
                    "cannot mint a token for {}/{} (audience {:?}): {}",
                    subject.namespace,
                    subject.service_account,
                    subject.audience,
                    chain(&e)
                ),
                "grant this identity create on serviceaccounts/token, or check the ServiceAccount exists",
            ));
            return None;
        }
    };
    let token = match jwt::read(&raw) {
        Ok(token) => token,
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!("the minted token: {e}"),
                "check kube-apiserver",
            ));
            return None;
        }
    };
    let iss = token.iss.clone().unwrap_or_default();
    match api.map(|a| issuer_difference(&a.issuer, &iss)) {
        Some(Some(difference)) => report.push(Check::fail(
            ID,
            format!(
                "the token's iss {iss:?} differs from the discovery document's issuer: {difference}"
            ),
            "kube-apiserver's first --service-account-issuer must be the public issuer URL",
        )),
        _ if !token.aud.contains(&subject.audience) => report.push(Check::fail(
            ID,
            format!(
                "the token's aud {:?} lacks {:?}",
                token.aud, subject.audience
            ),
            "check kube-apiserver's token audiences",
        )),
        _ => report.push(Check::ok(
            ID,
            format!(
                "a token for {}/{} has iss {iss:?}, aud {:?}, sub {:?}, kid {:?}",
                subject.namespace,
                subject.service_account,
                token.aud,
                token.sub.as_deref().unwrap_or_default(),
                token.kid.as_deref().unwrap_or_default()
            ),
        )),
    }
    Some(Minted { raw, token })
}

/// `issuer.flag`: `--issuer-url` against the API server's issuer, byte for byte.
pub fn flag(api: &ApiSide, issuer_url: Option<&str>, report: &mut Report) {
    const ID: &str = "issuer.flag";
    match issuer_url {
        None => report.push(Check::skip(
            ID,
            "no --issuer-url: give the issuer you configured elsewhere (discovery, IAM) to compare",
        )),
        Some(given) => match issuer_difference(given, &api.issuer) {
            None => report.push(Check::ok(ID, format!("--issuer-url equals the API server's issuer {given}"))),
            Some(difference) => report.push(Check::fail(
                ID,
                format!("--issuer-url {given:?} differs from the API server's issuer {:?}: {difference}", api.issuer),
                "use exactly the API server's --service-account-issuer everywhere (discovery --issuer-url, the IAM OIDC provider)",
            )),
        },
    }
}

/// The checks [`public`] makes after `public.discovery`, skipped when it cannot go on.
const AFTER_DISCOVERY: [&str; 2] = ["public.tls", "public.jwks"];

/// `public.discovery`, `public.tls`, `public.jwks`: both documents from the public issuer URL,
/// fetched as STS would (HTTPS, no credentials). An issuer that is the API server's own private
/// address, or an in-cluster name, is a local cluster's: STS can never reach it, so the checks
/// are skipped with that reason. `api_url` is the API server's URL.
pub async fn public(
    issuer: &str,
    api_url: &str,
    roots: &Roots,
    limit: Duration,
    report: &mut Report,
) -> Option<PublicSide> {
    let issuer_url = match IssuerUrl::parse(issuer) {
        Ok(url) => url,
        Err(e) => {
            report.push(Check::fail(
                "public.discovery",
                format!("the issuer cannot be published for STS: {e}"),
                "use an https:// issuer without query or fragment",
            ));
            skip_rest(report, &AFTER_DISCOVERY, "see public.discovery");
            return None;
        }
    };
    if let Some(why) = local_issuer(issuer, api_url) {
        report.push(Check::skip(
            "public.discovery",
            format!(
                "the issuer {issuer} is {why}: STS cannot fetch its documents, which is fine for a \
                 local cluster; to assume AWS roles, publish a public issuer (docs/first-deploy.md)"
            ),
        ));
        skip_rest(report, &AFTER_DISCOVERY, "the issuer is not public");
        return None;
    }
    let discovery_url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
    let Some(answer) = fetch("public.discovery", &discovery_url, roots, limit, report).await else {
        skip_rest(report, &AFTER_DISCOVERY, "see public.discovery");
        return None;
    };
    report.push(tls(&answer.seen, roots));
    let document: Value = match check_issuer(&issuer_url, &answer.body)
        .map(|()| serde_json::from_slice(&answer.body).expect("checked JSON"))
    {
        Ok(document) => document,
        Err(e) => {
            report.push(Check::fail(
                "public.discovery",
                format!("{discovery_url}: {e}"),
                "publish the API server's discovery document unchanged (irsa-webhook discovery)",
            ));
            skip_rest(report, &["public.jwks"], "see public.discovery");
            return None;
        }
    };
    let jwks_uri = document["jwks_uri"].as_str().unwrap_or_default().to_owned();
    let host = |url: &str| {
        url.split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .map(str::to_owned)
    };
    if !jwks_uri.starts_with("https://") {
        report.push(Check::fail(
            "public.discovery",
            format!("{discovery_url}: jwks_uri {jwks_uri:?} is not an https URL"),
            "set kube-apiserver's --service-account-jwks-uri to an https URL on the issuer, or let irsa-webhook discovery render the document",
        ));
        skip_rest(report, &["public.jwks"], "see public.discovery");
        return None;
    }
    if host(&jwks_uri) == host(issuer) {
        report.push(timed(
            "public.discovery",
            &discovery_url,
            &answer,
            format!("issuer matches, jwks_uri {jwks_uri}"),
        ));
    } else {
        report.push(Check::warn(
            "public.discovery",
            format!("{discovery_url}: jwks_uri {jwks_uri} is on another host than the issuer"),
            "STS fetches jwks_uri as published: keep it on the public issuer (irsa-webhook discovery renders it there)",
        ));
    }
    let answer = fetch("public.jwks", &jwks_uri, roots, limit, report).await?;
    match public_keys(&answer.body) {
        Ok(keys) => {
            let kids: Vec<String> = keys.iter().map(|k| k.kid().to_owned()).collect();
            report.push(timed(
                "public.jwks",
                &jwks_uri,
                &answer,
                format!("keys {kids:?}"),
            ));
            Some(PublicSide {
                kids,
                seen: answer.seen,
            })
        }
        Err(e) => {
            report.push(Check::fail(
                "public.jwks",
                format!("{jwks_uri}: {e}"),
                "publish the API server's /openid/v1/jwks (irsa-webhook discovery)",
            ));
            None
        }
    }
}

async fn fetch(
    id: &'static str,
    url: &str,
    roots: &Roots,
    limit: Duration,
    report: &mut Report,
) -> Option<probe::Answer> {
    match probe::get(url, roots, limit, MAX_BODY_BYTES).await {
        Ok(answer) if answer.status == 200 => Some(answer),
        Ok(answer) => {
            let location = answer
                .location
                .map(|l| format!(" to {l}"))
                .unwrap_or_default();
            let fix = match answer.status {
                401 | 403 => {
                    "STS fetches without credentials: serve the documents to anyone. When the issuer is the API server itself, bind the system:service-account-issuer-discovery ClusterRole to system:unauthenticated (kubectl create clusterrolebinding service-account-issuer-discovery --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated), or publish them elsewhere with irsa-webhook discovery"
                }
                300..=399 => {
                    "serve the document at exactly this URL with status 200; STS does not follow redirects"
                }
                _ => {
                    "serve the document at exactly this URL with status 200 (irsa-webhook discovery serves both)"
                }
            };
            report.push(Check::fail(
                id,
                format!("GET {url} answered HTTP {}{location}", answer.status),
                fix,
            ));
            None
        }
        Err(e) => {
            report.push(Check::fail(
                id,
                format!("GET {url}: {e}"),
                "make the issuer URL reachable from the internet over HTTPS (Funnel, Ingress, S3, ...)",
            ));
            None
        }
    }
}

/// ok, or warn when slower than [`SLOW`], fail beyond [`STS_LIMIT`].
fn timed(id: &'static str, url: &str, answer: &probe::Answer, detail: String) -> Check {
    let ms = answer.elapsed.as_millis();
    if answer.elapsed > STS_LIMIT {
        Check::fail(
            id,
            format!("GET {url} took {ms} ms; STS gives up after about 5 s"),
            "serve the documents from a cache or static storage close to AWS",
        )
    } else if answer.elapsed > SLOW {
        Check::warn(
            id,
            format!("GET {url} took {ms} ms ({detail})"),
            "STS allows about 5 s; serve the documents from a cache or static storage",
        )
    } else {
        Check::ok(id, format!("GET {url}: {ms} ms, {detail}"))
    }
}

/// Skips the checks `ids`, which could not run, saying `why`.
pub fn skip_rest(report: &mut Report, ids: &[&'static str], why: &str) {
    for id in ids {
        report.push(Check::skip(id, format!("not checked: {why}")));
    }
}

/// Why STS could never reach `issuer`, if so: an in-cluster DNS name, or the private address
/// of the API server itself (`api_url`), as local clusters issue by default. Pure.
pub fn local_issuer(issuer: &str, api_url: &str) -> Option<&'static str> {
    let authority = |url: &str| -> Option<String> {
        let rest = url.strip_prefix("https://")?;
        Some(rest.split('/').next()?.to_ascii_lowercase())
    };
    let issuer_authority = authority(issuer)?;
    let host = match issuer_authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => issuer_authority
            .rsplit_once(':')
            .map_or(issuer_authority.as_str(), |(h, _)| h)
            .to_owned(),
    };
    let in_cluster = [".svc", ".svc.cluster.local", ".cluster.local"];
    if in_cluster.iter().any(|s| host.ends_with(s)) {
        return Some("an in-cluster name");
    }
    let private = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let shared = ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64; // 100.64.0.0/10
            ip.is_private() || ip.is_loopback() || ip.is_link_local() || shared
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => host == "localhost",
    };
    let api_authority = authority(api_url).map(|a| a.trim_end_matches('/').to_owned());
    (private && api_authority.as_deref() == Some(issuer_authority.as_str()))
        .then_some("the API server's own private address")
}

/// `public.tls`: whether STS will trust the chain, else the thumbprint IAM needs.
fn tls(seen: &Seen, roots: &Roots) -> Check {
    const ID: &str = "public.tls";
    let thumbprint = seen.thumbprint().unwrap_or_default();
    match (&seen.public, &seen.extra) {
        (Some(Ok(())), _) => Check::ok(
            ID,
            "the certificate chain is publicly trusted; IAM needs no thumbprint",
        ),
        (_, Some(Ok(()))) => Check::warn(
            ID,
            format!(
                "the certificate chain is trusted only through --ca-file, not publicly: IAM needs thumbprint {thumbprint}"
            ),
            format!(
                "add thumbprint {thumbprint} to the IAM OIDC provider, or serve a publicly trusted certificate"
            ),
        ),
        (public, extra) => {
            let why = public
                .iter()
                .chain(extra)
                .filter_map(|v| v.as_ref().err().cloned())
                .collect::<Vec<_>>()
                .join("; ");
            let roots_used = if roots.extra.is_empty() {
                "public roots"
            } else {
                "public roots nor --ca-file"
            };
            Check::fail(
                ID,
                format!(
                    "the certificate chain is not trusted by the {roots_used} ({why}); the last certificate's SHA-1 thumbprint is {thumbprint}"
                ),
                "serve a publicly trusted certificate, or give IAM that thumbprint (and --ca-file here)",
            )
        }
    }
}

/// `keys.token` and `keys.published`: the token's key and every API server key are published.
pub fn keys(api: &ApiSide, public: &PublicSide, minted: Option<&Minted>, report: &mut Report) {
    match minted.map(|m| m.token.kid.clone().unwrap_or_default()) {
        None => report.push(Check::skip("keys.token", "no token to compare")),
        Some(kid) if public.kids.contains(&kid) => {
            report.push(Check::ok("keys.token", format!("the token's kid {kid:?} is published")))
        }
        Some(kid) => report.push(Check::fail(
            "keys.token",
            format!("the token's kid {kid:?} is not in the public JWKS {:?}: STS cannot verify it", public.kids),
            "republish the API server's JWKS (irsa-webhook discovery refreshes it; static copies must be re-exported)",
        )),
    }
    let missing: Vec<&String> = api
        .kids
        .iter()
        .filter(|k| !public.kids.contains(k))
        .collect();
    if missing.is_empty() {
        report.push(Check::ok(
            "keys.published",
            format!("all {} API server keys are published", api.kids.len()),
        ));
    } else {
        report.push(Check::fail(
            "keys.published",
            format!("API server keys {missing:?} are not in the public JWKS {:?} (stale after a key rotation?)", public.kids),
            "republish the JWKS after every signing-key change",
        ));
    }
}

/// `audience.characters`: invisible characters in the audience or the role ARN, which compare
/// unequal without showing.
pub fn characters(audience: &str, role_arn: Option<&str>, report: &mut Report) {
    const ID: &str = "audience.characters";
    let found: Vec<String> = [("audience", Some(audience)), ("role ARN", role_arn)]
        .into_iter()
        .filter_map(|(what, value)| Some(format!("{what} {:?} has {}", value?, invisible(value?)?)))
        .collect();
    if found.is_empty() {
        report.push(Check::ok(
            ID,
            format!("audience {audience:?} and role ARN are plain printable ASCII"),
        ));
    } else {
        report.push(Check::fail(
            ID,
            found.join("; "),
            "retype the annotation value: invisible characters make strings compare unequal",
        ));
    }
}

/// `audience.api-server`: whether the API server itself accepts a token minted for AWS.
pub async fn api_audience(
    client: &kube::Client,
    minted: &Minted,
    audience: &str,
    report: &mut Report,
) {
    const ID: &str = "audience.api-server";
    let review: TokenReview = serde_json::from_value(json!({"spec": {"token": minted.raw}}))
        .expect("a valid TokenReview");
    let reviews: Api<TokenReview> = Api::all(client.clone());
    match reviews.create(&PostParams::default(), &review).await {
        Ok(answer) if answer.status.as_ref().and_then(|s| s.authenticated) == Some(true) => {
            report.push(Check::warn(
                ID,
                format!("the API server accepts tokens for audience {audience:?}: a token given to AWS also authenticates to this cluster"),
                format!("remove {audience:?} from kube-apiserver's --api-audiences, or use another audience for AWS"),
            ))
        }
        Ok(_) => report.push(Check::ok(ID, format!("the API server does not accept tokens for audience {audience:?}"))),
        Err(e) => report.push(Check::skip(ID, format!("cannot ask the API server (TokenReview): {}", chain(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_issuers_are_the_api_servers_private_address_or_in_cluster_names() {
        let api = "https://10.244.77.1:38443/";
        assert_eq!(
            local_issuer("https://10.244.77.1:38443", api),
            Some("the API server's own private address")
        );
        assert_eq!(
            local_issuer(
                "https://kubernetes.default.svc.cluster.local",
                "https://127.0.0.1:6443/"
            ),
            Some("an in-cluster name")
        );
        assert_eq!(
            local_issuer("https://kubernetes.default.svc", api),
            Some("an in-cluster name")
        );
        assert_eq!(
            local_issuer("https://[::1]:6443/", "https://[::1]:6443/"),
            Some("the API server's own private address")
        );
        for public in [
            // Another server than the API server: checked like any issuer.
            "https://127.0.0.1:9443",
            "https://10.244.77.1:9443",
            // A public issuer, even when the API server is private.
            "https://oidc.example.com",
            "https://irsa-oidc.tail0123ab.ts.net/clusters/a",
        ] {
            assert_eq!(local_issuer(public, api), None, "{public}");
        }
        assert_eq!(
            local_issuer("https://34.1.2.3:443", "https://34.1.2.3:443/"),
            None,
            "a public API server can be its own issuer"
        );
    }
}
