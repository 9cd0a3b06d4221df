//! The whole IRSA trust chain end to end, on a control plane of its own whose
//! `--service-account-issuer` is our discovery server's https URL:
//!
//! webhook injects → the API server mints a token for the injected volume → a relying party
//! that knows only the issuer URL verifies it through `irsa-webhook discovery` (also across a
//! signing-key rotation) → an unchanged AWS SDK, given exactly the injected environment, gets
//! credentials from STS (moto).
//!
//! Both tests restart or depend on the same API server, so they take turns.

use crate::support;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde_json::{Value, json};
use support::cluster::{Cluster, ClusterOptions};
use support::discovery::{DiscoveryServer, RelyingParty};
use support::e2e::{ARN, Env, Registration, pod};
use support::sts::{ACCOUNT, Moto};
use support::tokens::request_token;

/// The API server and the discovery server that publishes its keys.
struct Chain {
    cluster: Cluster,
    discovery: DiscoveryServer,
}

/// Started once; `None` (and a SKIPPED line) against your own cluster, whose issuer is not ours
/// and whose keys we cannot rotate.
fn chain() -> Option<&'static Chain> {
    if support::cluster::skipped_on_own_cluster(
        "trust_chain",
        "it needs a control plane whose issuer is the discovery server it starts",
    ) {
        return None;
    }
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    Some(CHAIN.get_or_init(|| {
        // The API server needs the issuer URL up front and the discovery server needs the API
        // server: reserve the discovery port first.
        let (port, issuer) = DiscoveryServer::reserve();
        let cluster = Cluster::start(ClusterOptions {
            issuer: Some(issuer),
            ..Default::default()
        });
        let discovery = DiscoveryServer::start(port, &cluster.kubeconfig);
        assert_eq!(cluster.issuer, discovery.issuer);
        Chain { cluster, discovery }
    }))
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("the API server names the signing key")
}

fn kids(relying_party: &RelyingParty) -> Vec<String> {
    relying_party
        .jwks
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_token_verifies_from_the_issuer_url_alone_also_across_a_key_rotation() {
    let Some(chain) = chain() else { return };
    let _turn = SERIAL.lock().await;
    let issuer = &chain.discovery.issuer;
    let env = Env::new(&chain.cluster, "chain", Registration::default()).await;
    env.service_account(
        "app",
        &[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/token-expiration", "3600"),
        ],
    )
    .await;
    let created = env.create(pod("holder", "app", &[])).await;
    let (audience, expiration) = token_of(&created.pod, "aws-iam-token");
    assert_eq!((audience.as_str(), expiration), ("sts.amazonaws.com", 3600));
    let mint = |client: kube::Client| {
        let (ns, pod, audience) = (env.ns.clone(), created.pod.clone(), audience.clone());
        async move { request_token(&client, &ns, "app", &pod, &audience, expiration).await }
    };
    let old = mint(env.client.clone()).await;

    let relying_party = RelyingParty::discover(issuer, &chain.discovery.ca_pem).await;
    // Rendered by our discovery server: the API server's own document has no claims_supported.
    assert!(
        relying_party.configuration["claims_supported"].is_array(),
        "{}",
        relying_party.configuration
    );
    assert_eq!(
        relying_party.configuration["jwks_uri"],
        format!("{issuer}/openid/v1/jwks")
    );
    let keys_before = relying_party.jwks.keys.len();
    let claims = relying_party.verify(&old, &audience);
    assert_eq!(claims["iss"], *issuer);
    assert_eq!(claims["aud"], json!([audience]));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:app", env.ns)
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "holder");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        expiration
    );
    assert!(claims["exp"].as_i64().unwrap() > now());

    // Rotation: the API server signs with a new key and still publishes the old one.
    chain.cluster.rotate_signing_key();
    chain
        .discovery
        .wait_for_jwks(Duration::from_secs(30), |jwks| {
            jwks.keys.len() == keys_before + 1
        })
        .await;
    // A fresh client: the old one's pooled connections died with the API server.
    let new = mint(chain.cluster.client().await).await;
    assert_ne!(
        kid(&new),
        kid(&old),
        "the new token is signed by the new key"
    );

    let relying_party = RelyingParty::discover(issuer, &chain.discovery.ca_pem).await;
    let published = kids(&relying_party);
    assert!(published.contains(&kid(&old)), "{published:?}");
    assert!(published.contains(&kid(&new)), "{published:?}");
    for token in [&new, &old] {
        let claims = relying_party.verify(token, &audience);
        assert_eq!(
            claims["sub"],
            format!("system:serviceaccount:{}:app", env.ns)
        );
    }
    env.cleanup().await;
}

const ROLE: &str = "irsa-e2e-app";

#[tokio::test]
async fn an_unchanged_aws_sdk_gets_credentials_from_what_the_webhook_injected() {
    let Some(chain) = chain() else { return };
    let _turn = SERIAL.lock().await;
    let issuer = &chain.discovery.issuer;
    let moto = Moto::start(&support::sts::venv());
    // The opt-in session name: CloudTrail (here moto) names the pod that acted.
    let registration = Registration {
        args: vec!["--role-session-name-from-pod".into()],
        ..Registration::default()
    };
    let env = Env::new(&chain.cluster, "sdk", registration).await;

    // IAM, as an administrator would set it up for this cluster and ServiceAccount.
    let provider = moto.admin(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        issuer,
        "--client-id-list",
        "sts.amazonaws.com",
        "--thumbprint-list",
        &thumbprint(&chain.discovery.ca_pem),
    ]);
    let provider_arn = provider["OpenIDConnectProviderArn"].as_str().unwrap();
    let host = issuer.strip_prefix("https://").unwrap();
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:aud"): "sts.amazonaws.com",
                format!("{host}:sub"): format!("system:serviceaccount:{}:app", env.ns),
            }},
        }],
    });
    let role = moto.admin(&[
        "iam",
        "create-role",
        "--role-name",
        ROLE,
        "--assume-role-policy-document",
        &trust.to_string(),
    ]);
    let role_arn = role["Role"]["Arn"].as_str().unwrap().to_owned();
    assert_eq!(role_arn, format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"));

    env.service_account(
        "app",
        &[
            ("eks.amazonaws.com/role-arn", &role_arn),
            ("eks.amazonaws.com/region", "eu-west-1"),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            // An on-premises STS for this ServiceAccount: the stand-in.
            ("eks.amazonaws.com/sts-endpoint", &moto.endpoint),
        ],
    )
    .await;
    let created = env.create(pod("sdk", "app", &[])).await;
    let container = &created.pod["spec"]["containers"][0];
    let (audience, expiration) = token_of(&created.pod, "aws-iam-token");
    let token = request_token(
        &env.client,
        &env.ns,
        "app",
        &created.pod,
        &audience,
        expiration,
    )
    .await;

    // The container's environment as the kubelet would set it, except that the token file is
    // where this test wrote the token rather than where the volume would be mounted.
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "aws-iam-token"))
        .unwrap_or_else(|| panic!("no token mount in {container}"))["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let vars: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            // The downward API, as the kubelet resolves it.
            if v["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
                return (
                    name,
                    created.pod["metadata"]["name"].as_str().unwrap().to_owned(),
                );
            }
            let value = v["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} is not a plain value: {v}"))
                .to_owned();
            if name == "AWS_WEB_IDENTITY_TOKEN_FILE" {
                assert_eq!(value, format!("{mount}/token"));
                return (name, token_file.display().to_string());
            }
            (name, value)
        })
        .collect();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_ROLE_SESSION_NAME",
        "AWS_ENDPOINT_URL_STS",
    ] {
        assert!(names.contains(&needed), "{needed} not injected: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("ACCESS_KEY")), "{names:?}");

    // The region variables alone send the SDK to the regional STS endpoint (this botocore's
    // default for STS is still the global one); the injected endpoint overrides it.
    let without_endpoint: Vec<(String, String)> = vars
        .iter()
        .filter(|(n, _)| n != "AWS_ENDPOINT_URL_STS")
        .cloned()
        .collect();
    assert_eq!(
        moto.resolved_sts_endpoint(&borrowed(&without_endpoint)),
        "https://sts.eu-west-1.amazonaws.com"
    );

    // Exactly the injected variables: no access keys, no config files, nothing added by the test.
    let output = moto.aws(&borrowed(&vars), &["sts", "get-caller-identity"]);
    assert!(
        output.status.success(),
        "aws sts get-caller-identity failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let identity: Value = serde_json::from_slice(&output.stdout).unwrap();

    // What the SDK sent: the injected role and the token, unsigned (it had no credentials)...
    let assumed = moto.requests("AssumeRoleWithWebIdentity");
    assert_eq!(assumed.len(), 1, "{assumed:?}");
    let assumed = &assumed[0];
    assert_eq!(assumed.form["RoleArn"], role_arn);
    assert_eq!(assumed.form["WebIdentityToken"], token);
    assert!(
        !assumed.headers.contains_key("authorization"),
        "{assumed:?}"
    );
    let session = &assumed.form["RoleSessionName"];
    assert_eq!(session, "sdk", "the session is named after the pod");
    // ... then signed the call with the temporary credentials for the injected region.
    let calls = moto.requests("GetCallerIdentity");
    let call = calls.last().expect("GetCallerIdentity reached moto");
    assert!(
        call.headers["authorization"].contains("/eu-west-1/sts/aws4_request"),
        "{call:?}"
    );
    assert!(
        call.headers.contains_key("x-amz-security-token"),
        "{call:?}"
    );
    assert_eq!(identity["Account"], ACCOUNT);
    assert_eq!(
        identity["Arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{session}")
    );

    // What STS checks and moto does not: the token verifies through the issuer's discovery
    // documents, the provider is that issuer with that audience, and the role's trust policy
    // admits the verified claims (and would not admit another ServiceAccount).
    let claims = RelyingParty::discover(issuer, &chain.discovery.ca_pem)
        .await
        .verify(&token, &audience);
    let listed = moto.admin(&[
        "iam",
        "get-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        provider_arn,
    ]);
    assert_eq!(
        listed["Url"]
            .as_str()
            .map(|u| u.trim_start_matches("https://")),
        Some(host),
        "{listed}"
    );
    assert!(
        listed["ClientIDList"]
            .as_array()
            .unwrap()
            .contains(&json!(audience)),
        "{listed}"
    );
    let policy =
        &moto.admin(&["iam", "get-role", "--role-name", ROLE])["Role"]["AssumeRolePolicyDocument"];
    trust_policy_admits(policy, provider_arn, host, &claims).unwrap();
    let mut other = claims.clone();
    other["sub"] = json!(format!("system:serviceaccount:{}:other", env.ns));
    assert!(trust_policy_admits(policy, provider_arn, host, &other).is_err());
    env.cleanup().await;
}

fn borrowed(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

/// The SHA-1 of the top certificate of the issuer's chain, as IAM asks for.
fn thumbprint(ca_pem: &str) -> String {
    let ca = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &ca)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a statement of `policy` lets the web identity with verified `claims` from
/// `provider_arn` assume the role: the part of STS's evaluation IRSA relies on (`StringEquals`
/// on `<provider>:aud` and `<provider>:sub`).
fn trust_policy_admits(
    policy: &Value,
    provider_arn: &str,
    host: &str,
    claims: &Value,
) -> Result<(), String> {
    let statements = policy["Statement"].as_array().ok_or("no statements")?;
    let admits = |statement: &Value| {
        statement["Effect"] == "Allow"
            && statement["Principal"]["Federated"] == provider_arn
            && statement["Action"] == "sts:AssumeRoleWithWebIdentity"
            && statement["Condition"]["StringEquals"]
                .as_object()
                .is_some_and(|conditions| {
                    conditions.iter().all(|(key, expected)| {
                        let Some(claim) = key.strip_prefix(&format!("{host}:")) else {
                            return false;
                        };
                        match &claims[claim] {
                            Value::Array(values) => values.contains(expected),
                            value => value == expected,
                        }
                    })
                })
    };
    if statements.iter().any(admits) {
        Ok(())
    } else {
        Err(format!("{policy} does not admit {claims}"))
    }
}

const AZURE_CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const AZURE_TENANT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const GCP_PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/on-prem/providers/cluster-a";

/// The audience and lifetime of the token in the injected volume `name`.
fn token_of(pod: &Value, name: &str) -> (String, i64) {
    let source = pod["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name} in {pod}"))["projected"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("serviceAccountToken"))
        .unwrap()
        .clone();
    (
        source["audience"].as_str().unwrap().to_owned(),
        source["expirationSeconds"].as_i64().unwrap(),
    )
}

/// Runs `script` with the virtualenv's Python and exactly `env`; any HTTP attempt goes to a
/// closed local port, so nothing can leave the machine. Returns its JSON output.
fn python(script: &str, env: &[(String, String)]) -> Value {
    let venv = support::sts::venv();
    let mut python = std::process::Command::new(venv.join("bin/python"));
    python
        .args(["-c", script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", std::env::temp_dir())
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    serde_json::from_str(&support::run(python, None).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

#[tokio::test]
async fn azure_and_google_cloud_sdks_accept_what_the_webhook_injected() {
    let Some(chain) = chain() else { return };
    let _turn = SERIAL.lock().await;
    let issuer = &chain.discovery.issuer;
    let env = Env::new(&chain.cluster, "clouds", Registration::default()).await;
    env.service_account(
        "azure",
        &[
            ("azure.workload.identity/client-id", AZURE_CLIENT),
            ("azure.workload.identity/tenant-id", AZURE_TENANT),
        ],
    )
    .await;
    env.service_account(
        "gcp",
        &[
            ("cloud.google.com/workload-identity-provider", GCP_PROVIDER),
            (
                "cloud.google.com/service-account-email",
                "app@demo.iam.gserviceaccount.com",
            ),
        ],
    )
    .await;
    let relying_party = RelyingParty::discover(issuer, &chain.discovery.ca_pem).await;
    let dir = tempfile::tempdir().unwrap();

    // Azure: the labelled pod, stored with the contract; its token verifies through our
    // discovery documents; Azure's SDK builds its credential from the environment alone.
    let mut azure_pod = pod("azure-app", "azure", &[]);
    azure_pod["metadata"]["labels"] = json!({"azure.workload.identity/use": "true"});
    let created = env.create(azure_pod).await;
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let (audience, expiration) = token_of(&created.pod, "azure-identity-token");
    assert_eq!(
        (audience.as_str(), expiration),
        ("api://AzureADTokenExchange", 3600)
    );
    let token = request_token(
        &env.client,
        &env.ns,
        "azure",
        &created.pod,
        &audience,
        expiration,
    )
    .await;
    let claims = relying_party.verify(&token, &audience);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:azure", env.ns)
    );
    let token_file = dir.path().join("azure-token");
    std::fs::write(&token_file, &token).unwrap();
    let vars: Vec<(String, String)> = created.pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            let value = match name.as_str() {
                // Where this test wrote the token, instead of the mount.
                "AZURE_FEDERATED_TOKEN_FILE" => token_file.display().to_string(),
                _ => v["value"].as_str().unwrap().to_owned(),
            };
            (name, value)
        })
        .collect();
    let seen = python(
        "import json\n\
         from azure.identity import WorkloadIdentityCredential\n\
         c = WorkloadIdentityCredential()\n\
         print(json.dumps({'authority': c._client._authority, 'tenant': c._client._tenant_id,\n\
             'client': c._client._client_id, 'token': c._get_service_account_token()}))",
        &vars,
    );
    assert_eq!(
        seen,
        json!({"authority": "https://login.microsoftonline.com", "tenant": AZURE_TENANT,
            "client": AZURE_CLIENT, "token": token})
    );

    // Google Cloud: the credential configuration from the pod annotation, as the volume
    // projects it, loaded by google-auth; the token for the provider verifies.
    let created = env.create(pod("gcp-app", "gcp", &[])).await;
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let (audience, expiration) = token_of(&created.pod, "gcp-workload-identity");
    assert_eq!(audience, format!("//iam.googleapis.com/{GCP_PROVIDER}"));
    let token = request_token(
        &env.client,
        &env.ns,
        "gcp",
        &created.pod,
        &audience,
        expiration,
    )
    .await;
    let claims = relying_party.verify(&token, &audience);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:gcp", env.ns)
    );
    let mut config: Value = serde_json::from_str(
        created.pod["metadata"]["annotations"]["cloud.google.com/external-credentials-json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["credential_source"]["file"],
        "/var/run/secrets/gcp/workload-identity/token"
    );
    let token_file = dir.path().join("gcp-token");
    std::fs::write(&token_file, &token).unwrap();
    config["credential_source"]["file"] = json!(token_file.display().to_string());
    let config_file = dir.path().join("credential-configuration.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let injected = created.pod["spec"]["containers"][0]["env"].clone();
    assert_eq!(
        injected,
        json!([{"name": "GOOGLE_APPLICATION_CREDENTIALS",
            "value": "/var/run/secrets/gcp/workload-identity/credential-configuration.json"}])
    );
    let seen = python(
        "import json, os\n\
         from google.auth import identity_pool\n\
         c = identity_pool.Credentials.from_file(os.environ['CONFIG'])\n\
         print(json.dumps({'audience': c.info['audience'], 'token_url': c.info['token_url'],\n\
             'email': c.service_account_email, 'token': c.retrieve_subject_token(None)}))",
        &[("CONFIG".into(), config_file.display().to_string())],
    );
    assert_eq!(
        seen,
        json!({"audience": format!("//iam.googleapis.com/{GCP_PROVIDER}"),
            "token_url": "https://sts.googleapis.com/v1/token",
            "email": "app@demo.iam.gserviceaccount.com", "token": token})
    );
    env.cleanup().await;
}
