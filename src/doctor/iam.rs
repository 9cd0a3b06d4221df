//! The AWS side, read-only with the standard credential chain
//! (`iam:ListOpenIDConnectProviders`, `iam:GetOpenIDConnectProvider`, `iam:GetRole`,
//! `sts:GetCallerIdentity`): the OIDC provider for the issuer, its client IDs and thumbprints,
//! and the role's trust policy evaluated locally against the minted token.

use std::time::Duration;

use serde_json::Value;

use super::chain::{Minted, PublicSide};
use super::compare::issuer_difference;
use super::report::{Check, Report};
use super::trust_policy::evaluate::{self, Request};
use super::trust_policy::provider_path;
use crate::serving::aws::{Client, query};

/// The client for IAM and STS.
pub struct Aws {
    client: Client,
}

/// The client on the standard AWS configuration, every call bounded by `limit`.
pub async fn connect(limit: Duration) -> Aws {
    Aws {
        client: Client::new(limit).await,
    }
}

/// The provider found for the issuer.
struct OidcProvider {
    arn: String,
    client_ids: Vec<String>,
    thumbprints: Vec<String>,
}

/// Every `--aws` check.
pub async fn check(
    aws: &Aws,
    issuer: &str,
    audience: &str,
    role_arn: Option<&str>,
    minted: Option<&Minted>,
    public: Option<&PublicSide>,
    report: &mut Report,
) {
    match query::caller_arn(&aws.client).await {
        Ok(me) => report.push(Check::ok(
            "aws.identity",
            format!("AWS calls are made as {me}"),
        )),
        Err(e) => {
            report.push(Check::fail(
                "aws.identity",
                format!("no usable AWS credentials: {e}"),
                "set AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...) for an identity that may read IAM",
            ));
            return;
        }
    }
    let provider = find_provider(aws, issuer, report).await;
    if let Some(provider) = &provider {
        if provider.client_ids.iter().any(|c| c == audience) {
            report.push(Check::ok(
                "audience.client-id",
                format!("audience {audience:?} is a client ID of {}", provider.arn),
            ));
        } else {
            report.push(Check::fail(
                "audience.client-id",
                format!(
                    "audience {audience:?} is not among the provider's client IDs {:?}",
                    provider.client_ids
                ),
                format!(
                    "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {} --client-id {audience}",
                    provider.arn
                ),
            ));
        }
        if let Some(public) = public
            && !matches!(public.seen.public, Some(Ok(())))
            && let Some(thumbprint) = public.seen.thumbprint()
        {
            const ID: &str = "issuer.thumbprint";
            if provider
                .thumbprints
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&thumbprint))
            {
                report.push(Check::ok(
                    ID,
                    format!("the provider lists thumbprint {thumbprint}, which IAM needs for a certificate that is not publicly trusted"),
                ));
            } else {
                report.push(Check::fail(
                    ID,
                    format!("the certificate is not publicly trusted and the provider's thumbprints {:?} lack {thumbprint}", provider.thumbprints),
                    format!("aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn {} --thumbprint-list {thumbprint}", provider.arn),
                ));
            }
        }
    }
    let Some(role_arn) =
        role_arn.filter(|arn| crate::injection::identity::check_role_arn(arn).is_ok())
    else {
        report.push(Check::skip("role.trust", "no valid role ARN to look up"));
        return;
    };
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    let document = match query::role_trust_policy(&aws.client, name).await {
        Ok(document) => percent_decode(&document),
        Err(e) => {
            report.push(if e.code() == Some("NoSuchEntity") {
                Check::fail(
                    "role.exists",
                    format!("role {name} does not exist in this account"),
                    format!("create the role (irsa-webhook trust-policy prints its trust policy), or fix the annotation {role_arn}"),
                )
            } else {
                Check::fail(
                    "role.exists",
                    format!("{name}: {e}"),
                    "allow this identity iam:GetRole",
                )
            });
            return;
        }
    };
    report.push(Check::ok("role.exists", format!("role {role_arn} exists")));
    let Some(minted) = minted else {
        report.push(Check::skip(
            "role.trust",
            "no token to evaluate the trust policy with",
        ));
        return;
    };
    let policy: Value = match serde_json::from_str(&document) {
        Ok(policy) => policy,
        Err(e) => {
            report.push(Check::fail(
                "role.trust",
                format!("the trust policy is not JSON: {e}"),
                "fix the role's trust policy",
            ));
            return;
        }
    };
    let provider_path = provider_path(issuer);
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let partition = role_arn.split(':').nth(1).unwrap_or("aws");
    let provider_arn = provider.as_ref().map_or_else(
        || format!("arn:{partition}:iam::{account}:oidc-provider/{provider_path}"),
        |p| p.arn.clone(),
    );
    let sub = minted.token.sub.clone().unwrap_or_default();
    let verdict = evaluate::evaluate(
        &policy,
        &Request {
            provider_arn: &provider_arn,
            provider: &provider_path,
            sub: &sub,
            aud: audience,
        },
    );
    report.push(if !verdict.allowed {
        Check::fail(
            "role.trust",
            format!("the trust policy of {name} does not let {sub} assume it: {}", verdict.why_not.join("; ")),
            "replace the trust policy with what `irsa-webhook trust-policy` prints for this issuer and ServiceAccount",
        )
    } else if !verdict.warnings.is_empty() {
        Check::warn(
            "role.trust",
            format!("the trust policy lets {sub} assume {name}, but {}", verdict.warnings.join("; ")),
            "add a StringEquals condition on :sub naming exactly the ServiceAccount",
        )
    } else {
        Check::ok("role.trust", format!("the trust policy lets {sub} (aud {audience:?}) assume {name}"))
    });
}

/// `issuer.iam-provider`: the provider whose URL is the issuer, else the closest one named.
async fn find_provider(aws: &Aws, issuer: &str, report: &mut Report) -> Option<OidcProvider> {
    const ID: &str = "issuer.iam-provider";
    let arns = match query::oidc_provider_arns(&aws.client).await {
        Ok(arns) => arns,
        Err(e) => {
            report.push(Check::fail(
                ID,
                e.to_string(),
                "allow this identity iam:ListOpenIDConnectProviders and iam:GetOpenIDConnectProvider",
            ));
            return None;
        }
    };
    let wanted = provider_path(issuer);
    let path_of = |arn: &str| {
        arn.split_once(":oidc-provider/")
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default()
    };
    let Some(arn) = arns.iter().find(|arn| path_of(arn) == wanted).cloned() else {
        let near: Vec<String> = arns
            .iter()
            .filter_map(|arn| {
                let theirs = format!("https://{}", path_of(arn));
                let difference = issuer_difference(issuer.trim_end_matches('/'), &theirs)?;
                let same_host = theirs.split('/').nth(2) == issuer.split('/').nth(2);
                (same_host || difference.contains("letter case"))
                    .then(|| format!("{arn} ({difference})"))
            })
            .collect();
        let hint = if near.is_empty() {
            format!("{} providers, none for this issuer", arns.len())
        } else {
            format!("closest: {}", near.join(", "))
        };
        report.push(Check::fail(
            ID,
            format!("no IAM OIDC provider for {wanted}; {hint}"),
            format!("aws iam create-open-id-connect-provider --url {issuer} --client-id-list sts.amazonaws.com (or terraform/modules/oidc-provider)"),
        ));
        return None;
    };
    match query::oidc_provider(&aws.client, &arn).await {
        Ok(p) => {
            report.push(Check::ok(
                ID,
                format!("IAM OIDC provider {arn} matches the issuer"),
            ));
            Some(OidcProvider {
                arn,
                client_ids: p.client_ids,
                thumbprints: p.thumbprints,
            })
        }
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!("{arn}: {e}"),
                "allow this identity iam:GetOpenIDConnectProvider",
            ));
            None
        }
    }
}

/// IAM returns policy documents URL-encoded (RFC 3986); plain JSON passes through.
fn percent_decode(text: &str) -> String {
    if !text.starts_with('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_policies_are_decoded_and_json_passes() {
        assert_eq!(
            percent_decode("%7B%22a%22%3A%20%22b%2Fc%22%7D"),
            "{\"a\": \"b/c\"}"
        );
        assert_eq!(percent_decode("{\"a\": \"b%2F\"}"), "{\"a\": \"b%2F\"}");
    }
}
