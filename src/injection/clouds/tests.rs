//! The Azure and Google Cloud contracts, applied through `mutate` as the webhook applies them.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::injection::config::InjectionConfig;
use crate::injection::identity::SaAnnotations;
use crate::injection::mutation::{Decision, Outcome, ServiceAccount, mutate};
use crate::injection::pod::PodView;

const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/on-prem/providers/cluster-a";

fn account(pairs: &[(&str, &str)]) -> SaAnnotations {
    SaAnnotations::from_annotations(&InjectionConfig::default(), pairs.iter().copied())
        .expect("annotations kept")
}

fn run_cfg(pod: &Value, sa: &SaAnnotations, cfg: &InjectionConfig) -> (Value, Outcome) {
    let view = PodView::deserialize(pod).unwrap();
    let outcome = mutate(&view, "ns/app", ServiceAccount::Found(Some(sa)), cfg);
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &outcome.patch).expect("patch applies");
    (patched, outcome)
}

fn run(pod: &Value, sa: &SaAnnotations) -> (Value, Outcome) {
    run_cfg(pod, sa, &InjectionConfig::default())
}

fn azure_pod() -> Value {
    json!({"metadata": {"name": "p", "labels": {"azure.workload.identity/use": "true"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]}})
}

fn env_names(container: &Value) -> Vec<&str> {
    container["env"]
        .as_array()
        .map(|e| e.iter().map(|v| v["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn an_azure_pod_gets_azure_workload_identitys_contract() {
    let sa = account(&[
        ("azure.workload.identity/client-id", CLIENT),
        ("azure.workload.identity/tenant-id", TENANT),
    ]);
    let (pod, out) = run(&azure_pod(), &sa);
    assert_eq!(out.decision, Decision::Mutated);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["env"],
        json!([
            {"name": "AZURE_CLIENT_ID", "value": CLIENT},
            {"name": "AZURE_TENANT_ID", "value": TENANT},
            {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": "/var/run/secrets/azure/tokens/azure-identity-token"},
            {"name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.com/"},
        ])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "azure-identity-token", "mountPath": "/var/run/secrets/azure/tokens", "readOnly": true}])
    );
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "azure-identity-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "azure-identity-token", "expirationSeconds": 3600, "audience": "api://AzureADTokenExchange"}}]}}])
    );
    // Idempotent: a second pass adds nothing.
    let (again, out) = run(&pod, &sa);
    assert_eq!(out.decision, Decision::AlreadyMutated);
    assert_eq!(again, pod);
}

#[test]
fn azure_settings_pod_annotations_and_refusals() {
    let mut pod = azure_pod();
    pod["metadata"]["annotations"] = json!({
        "azure.workload.identity/service-account-token-expiration": "7200",
        "azure.workload.identity/skip-containers": "sidecar; other",
    });
    pod["spec"]["containers"] = json!([
        {"name": "app", "env": [{"name": "AZURE_CLIENT_ID", "value": "mine"}]},
        {"name": "sidecar"},
    ]);
    let sa = account(&[("azure.workload.identity/client-id", CLIENT)]);
    let mut cfg = InjectionConfig::default();
    cfg.azure.tenant_id = Some(TENANT.into());
    cfg.azure.authority_host = "https://login.microsoftonline.us/".into();
    let (patched, out) = run_cfg(&pod, &sa, &cfg);
    assert_eq!(out.decision, Decision::Mutated);
    let app = &patched["spec"]["containers"][0];
    assert_eq!(
        app["env"][0]["value"], "mine",
        "a container's own value is kept"
    );
    assert_eq!(env_names(app).len(), 4);
    assert_eq!(app["env"][3]["value"], "https://login.microsoftonline.us/");
    assert!(
        patched["spec"]["containers"][1].get("env").is_none(),
        "skipped"
    );
    assert_eq!(
        patched["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        7200
    );

    // Never a denial: a warning and no Azure injection.
    let refusals = [
        (
            account(&[
                ("azure.workload.identity/client-id", "not-a-guid"),
                ("azure.workload.identity/tenant-id", TENANT),
            ]),
            "is not a GUID",
        ),
        (
            account(&[("azure.workload.identity/client-id", CLIENT)]),
            "--azure-tenant-id is not set",
        ),
        (
            account(&[("azure.workload.identity/tenant-id", TENANT)]),
            "has no azure.workload.identity/client-id",
        ),
        (
            account(&[
                ("azure.workload.identity/client-id", CLIENT),
                ("azure.workload.identity/tenant-id", TENANT),
                (
                    "azure.workload.identity/service-account-token-expiration",
                    "600",
                ),
            ]),
            "from 3600 to 86400",
        ),
    ];
    for (sa, why) in refusals {
        let (patched, out) = run(&azure_pod(), &sa);
        assert_eq!(patched, azure_pod(), "{why}");
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains(why) && w.ends_with("Azure credentials not injected")),
            "{why}: {:?}",
            out.warnings
        );
    }
    // Without the label the pod is not Azure's.
    let mut unlabelled = azure_pod();
    unlabelled["metadata"]["labels"] = json!({});
    let sa = account(&[
        ("azure.workload.identity/client-id", CLIENT),
        ("azure.workload.identity/tenant-id", TENANT),
    ]);
    let (patched, out) = run(&unlabelled, &sa);
    assert_eq!(patched, unlabelled);
    assert_eq!(out.decision, Decision::NoRole);
}

#[test]
fn a_google_cloud_pod_gets_a_token_and_its_credential_configuration() {
    let sa = account(&[
        ("cloud.google.com/workload-identity-provider", PROVIDER),
        (
            "cloud.google.com/service-account-email",
            "app@proj.iam.gserviceaccount.com",
        ),
    ]);
    let plain = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
    let (pod, out) = run(&plain, &sa);
    assert_eq!(out.decision, Decision::Mutated);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let dir = "/var/run/secrets/gcp/workload-identity";
    let credentials: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["cloud.google.com/external-credentials-json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        credentials,
        json!({
            "type": "external_account",
            "audience": format!("//iam.googleapis.com/{PROVIDER}"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"file": format!("{dir}/token"), "format": {"type": "text"}},
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/app@proj.iam.gserviceaccount.com:generateAccessToken",
        })
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["projected"]["sources"],
        json!([
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600, "audience": format!("//iam.googleapis.com/{PROVIDER}")}},
            {"downwardAPI": {"items": [{"path": "credential-configuration.json", "fieldRef": {
                "fieldPath": "metadata.annotations['cloud.google.com/external-credentials-json']"}}]}},
        ])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        json!([{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": format!("{dir}/credential-configuration.json")}])
    );
    let (again, out) = run(&pod, &sa);
    assert_eq!((again, out.decision), (pod, Decision::AlreadyMutated));

    for (annotations, why) in [
        (
            vec![(
                "cloud.google.com/workload-identity-provider",
                "projects/x/locations/global/workloadIdentityPools/p/providers/q",
            )],
            "is not a provider name",
        ),
        (
            vec![
                ("cloud.google.com/workload-identity-provider", PROVIDER),
                ("cloud.google.com/service-account-email", "nobody"),
            ],
            "is not a service account email",
        ),
    ] {
        let (patched, out) = run(&plain, &account(&annotations));
        assert_eq!(patched, plain);
        assert!(
            out.warnings.iter().any(|w| w.contains(why)),
            "{why}: {:?}",
            out.warnings
        );
    }
}

#[test]
fn three_clouds_in_one_pod_share_the_arrays_they_create() {
    let sa = account(&[
        (
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/app",
        ),
        ("azure.workload.identity/client-id", CLIENT),
        ("azure.workload.identity/tenant-id", TENANT),
        ("cloud.google.com/workload-identity-provider", PROVIDER),
    ]);
    let mut pod = azure_pod();
    pod["metadata"]["labels"]["app"] = json!("x");
    let (patched, out) = run(&pod, &sa);
    assert_eq!(out.decision, Decision::Mutated);
    let names: Vec<&str> = patched["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "aws-iam-token",
            "azure-identity-token",
            "gcp-workload-identity"
        ]
    );
    let container = &patched["spec"]["containers"][0];
    assert_eq!(env_names(container).len(), 2 + 4 + 1);
    assert_eq!(container["volumeMounts"].as_array().unwrap().len(), 3);
    assert_eq!(
        patched["metadata"]["labels"]["app"], "x",
        "nothing else touched"
    );
    let (again, out) = run(&patched, &sa);
    assert_eq!((again, out.decision), (patched, Decision::AlreadyMutated));
}
