//! Google Cloud Workload Identity Federation outside GKE: a ServiceAccount that names a
//! workload identity provider gets a token for that provider and a credential configuration
//! file (`external_account`) that Google's client libraries read through
//! `GOOGLE_APPLICATION_CREDENTIALS`. The file is written by the webhook into a pod annotation and
//! projected by the same volume (downward API): no init container, no ConfigMap.

use std::collections::HashSet;

use serde_json::json;

use super::Injection;
use crate::injection::lifetime::{MAX_TOKEN_EXPIRATION, MIN_TOKEN_EXPIRATION, TOKEN_EXPIRATION};
use crate::injection::pod::PodView;

/// ServiceAccount annotations.
pub const PROVIDER: &str = "cloud.google.com/workload-identity-provider";
pub const EMAIL: &str = "cloud.google.com/service-account-email";
pub const AUDIENCE: &str = "cloud.google.com/audience";
/// ServiceAccount or pod annotation (the pod's wins), seconds.
pub const EXPIRATION: &str = "cloud.google.com/token-expiration";
/// Pod annotation the webhook writes the credential configuration into.
pub const CREDENTIALS_ANNOTATION: &str = "cloud.google.com/external-credentials-json";
pub const VOLUME: &str = "gcp-workload-identity";
pub const TOKEN_FILE: &str = "token";
pub const CREDENTIALS_FILE: &str = "credential-configuration.json";
pub const DEFAULT_EXPIRATION: i64 = 3600;

/// The Google Cloud settings of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpSettings {
    /// `--gcp-token-mount-path`.
    pub mount_path: String,
}

/// The Google Cloud annotations of a ServiceAccount, raw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcpSa {
    pub provider: Option<Box<str>>,
    pub email: Option<Box<str>>,
    pub audience: Option<Box<str>>,
    pub expiration: Option<Box<str>>,
}

/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`, the
/// IDs 4 to 32 lowercase letters, digits and dashes.
pub fn check_provider(name: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = name.split('/').collect();
    let id = |s: &str| {
        (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match parts.as_slice() {
        [
            "projects",
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            if id(pool) && id(provider) {
                Ok(())
            } else {
                Err("pool and provider IDs are 4 to 32 lowercase letters, digits and dashes")
            }
        }
        _ => Err(
            "it must be projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
        ),
    }
}

/// A service account email: `name@domain` with a dotted domain.
fn is_email(value: &str) -> bool {
    value.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && domain.contains('.')
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
    })
}

/// The credential configuration file for `provider`, reading the token at `token_file`.
pub fn credential_configuration(provider: &str, email: Option<&str>, token_file: &str) -> String {
    let mut config = json!({
        "type": "external_account",
        "audience": format!("//iam.googleapis.com/{provider}"),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": token_file, "format": {"type": "text"}},
    });
    if let Some(email) = email {
        config["service_account_impersonation_url"] = json!(format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
        ));
    }
    serde_json::to_string(&config).expect("JSON values serialise")
}

/// What Google Cloud wants in `pod`, `None` when its ServiceAccount names no provider or it
/// cannot get it (with a warning saying why).
pub fn injection(
    pod: &PodView<'_>,
    sa: Option<&GcpSa>,
    settings: &GcpSettings,
    sa_name: &str,
    warnings: &mut Vec<String>,
) -> Option<Injection> {
    let sa = sa?;
    let provider = sa.provider.as_deref()?.trim();
    let mut refuse = |why: String| {
        warnings.push(format!("{why}: Google Cloud credentials not injected"));
        None
    };
    if let Err(why) = check_provider(provider) {
        return refuse(format!(
            "{PROVIDER}={provider:?} on ServiceAccount {sa_name} is not a provider name: {why}"
        ));
    }
    let email = sa.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if let Some(email) = email
        && !is_email(email)
    {
        return refuse(format!(
            "{EMAIL}={email:?} on ServiceAccount {sa_name} is not a service account email"
        ));
    }
    let audience = sa
        .audience
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map_or_else(|| format!("//iam.googleapis.com/{provider}"), str::to_owned);
    let expiration = match pod.annotation(EXPIRATION).or(sa.expiration.as_deref()) {
        None => DEFAULT_EXPIRATION,
        Some(value) => match value.trim().parse::<i64>() {
            Ok(s) if TOKEN_EXPIRATION.contains(&s) => s,
            _ => {
                return refuse(format!(
                    "{EXPIRATION}={value:?} is not a number of seconds from {MIN_TOKEN_EXPIRATION} to {MAX_TOKEN_EXPIRATION}"
                ));
            }
        },
    };
    let token_file = format!("{}/{TOKEN_FILE}", settings.mount_path);
    let credentials = credential_configuration(provider, email, &token_file);
    Some(Injection {
        cloud: "Google Cloud",
        volume_name: VOLUME,
        sources: json!([
            {"serviceAccountToken": {"path": TOKEN_FILE, "expirationSeconds": expiration, "audience": audience}},
            {"downwardAPI": {"items": [{"path": CREDENTIALS_FILE, "fieldRef": {
                "fieldPath": format!("metadata.annotations['{CREDENTIALS_ANNOTATION}']")}}]}},
        ]),
        mount_path: settings.mount_path.clone(),
        env: vec![(
            "GOOGLE_APPLICATION_CREDENTIALS",
            format!("{}/{CREDENTIALS_FILE}", settings.mount_path),
        )],
        skip: HashSet::new(),
        annotations: vec![(CREDENTIALS_ANNOTATION, credentials)],
    })
}
