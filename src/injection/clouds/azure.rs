//! Azure Workload Identity, compatible with azure-workload-identity: pods labelled
//! `azure.workload.identity/use: "true"` whose ServiceAccount names a client ID get a token for
//! `api://AzureADTokenExchange` and the `AZURE_*` variables Azure's SDKs read.

use std::collections::HashSet;

use serde_json::json;

use super::{Injection, is_guid};
use crate::injection::pod::PodView;

/// Pod label that opts a pod in.
pub const USE_LABEL: &str = "azure.workload.identity/use";
/// ServiceAccount annotations.
pub const CLIENT_ID: &str = "azure.workload.identity/client-id";
pub const TENANT_ID: &str = "azure.workload.identity/tenant-id";
/// ServiceAccount or pod annotation (the pod's wins), seconds.
pub const EXPIRATION: &str = "azure.workload.identity/service-account-token-expiration";
/// Pod annotation: `;`-separated container names left alone.
pub const SKIP_CONTAINERS: &str = "azure.workload.identity/skip-containers";
/// Volume name and token file name, as azure-workload-identity names them.
pub const VOLUME: &str = "azure-identity-token";
/// Lifetime bounds azure-workload-identity accepts, and its default.
pub const EXPIRATION_RANGE: std::ops::RangeInclusive<i64> = 3600..=86_400;
pub const DEFAULT_EXPIRATION: i64 = 3600;

/// The Azure settings of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// `--azure-tenant-id`, for ServiceAccounts that name none.
    pub tenant_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`, from `--azure-environment`.
    pub authority_host: String,
    /// `--azure-token-audience`.
    pub audience: String,
    /// `--azure-token-mount-path`.
    pub mount_path: String,
}

/// The authority host of an Azure environment, by the names azure-workload-identity takes.
pub fn authority_host(environment: &str) -> Option<&'static str> {
    match environment.to_ascii_lowercase().as_str() {
        "azurepubliccloud" | "public" => Some("https://login.microsoftonline.com/"),
        "azureusgovernmentcloud" | "usgovernment" => Some("https://login.microsoftonline.us/"),
        "azurechinacloud" | "china" => Some("https://login.chinacloudapi.cn/"),
        _ => None,
    }
}

/// The Azure annotations of a ServiceAccount, raw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureSa {
    pub client_id: Option<Box<str>>,
    pub tenant_id: Option<Box<str>>,
    pub expiration: Option<Box<str>>,
}

/// What Azure wants in `pod`, `None` when the pod does not opt in or cannot get it (with a
/// warning saying why).
pub fn injection(
    pod: &PodView<'_>,
    sa: Option<&AzureSa>,
    settings: &AzureSettings,
    sa_name: &str,
    warnings: &mut Vec<String>,
) -> Option<Injection> {
    if pod.metadata.labels.get(USE_LABEL).map(|v| v.as_ref()) != Some("true") {
        return None;
    }
    let mut refuse = |why: String| {
        warnings.push(format!("{why}: Azure credentials not injected"));
        None
    };
    let sa = sa.cloned().unwrap_or_default();
    let Some(client_id) = sa.client_id.as_deref().map(str::trim) else {
        return refuse(format!(
            "the pod is labelled {USE_LABEL}=true but ServiceAccount {sa_name} has no {CLIENT_ID} annotation"
        ));
    };
    if !is_guid(client_id) {
        return refuse(format!(
            "{CLIENT_ID}={client_id:?} on ServiceAccount {sa_name} is not a GUID"
        ));
    }
    let tenant_id = sa
        .tenant_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| settings.tenant_id.clone());
    let Some(tenant_id) = tenant_id else {
        return refuse(format!(
            "ServiceAccount {sa_name} has no {TENANT_ID} annotation and --azure-tenant-id is not set"
        ));
    };
    let expiration = match pod.annotation(EXPIRATION).or(sa.expiration.as_deref()) {
        None => DEFAULT_EXPIRATION,
        Some(value) => match value.trim().parse::<i64>() {
            Ok(seconds) if EXPIRATION_RANGE.contains(&seconds) => seconds,
            _ => {
                return refuse(format!(
                    "{EXPIRATION}={value:?} is not a number of seconds from {} to {}",
                    EXPIRATION_RANGE.start(),
                    EXPIRATION_RANGE.end()
                ));
            }
        },
    };
    let skip: HashSet<String> = pod
        .annotation(SKIP_CONTAINERS)
        .into_iter()
        .flat_map(|list| list.split(';'))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let token_file = format!("{}/{VOLUME}", settings.mount_path);
    Some(Injection {
        cloud: "Azure",
        volume_name: VOLUME,
        sources: json!([{"serviceAccountToken": {
            "path": VOLUME,
            "expirationSeconds": expiration,
            "audience": settings.audience,
        }}]),
        mount_path: settings.mount_path.clone(),
        env: vec![
            ("AZURE_CLIENT_ID", client_id.to_owned()),
            ("AZURE_TENANT_ID", tenant_id),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file),
            ("AZURE_AUTHORITY_HOST", settings.authority_host.clone()),
        ],
        skip,
        annotations: Vec::new(),
    })
}
