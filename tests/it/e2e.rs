//! End-to-end: the webhook behind a real kube-apiserver (built by tests/cluster/install.sh).
//! Each test gets its own namespace and webhook process; the control plane is shared.

use crate::support;

use std::sync::OnceLock;

use serde_json::{Value, json};
use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{ARN, Env, Registration, has_token_volume, pod};

const MOUNT: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
const TOKEN: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(ClusterOptions::default()))
}

async fn env(test: &str) -> Env {
    Env::new(cluster(), test, Registration::default()).await
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {pod}"))
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|v| v["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn token_volume(pod: &Value) -> Value {
    pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "aws-iam-token")
        .cloned()
        .unwrap_or_else(|| panic!("no token volume in {pod}"))
}

#[tokio::test]
async fn annotated_service_account_gets_exactly_the_contract_and_others_nothing() {
    let env = env("contract").await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    env.service_account("plain", &[]).await;

    let created = env.create(pod("annotated", "app", &[])).await;
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let app = container(&created.pod, "containers", "app");
    assert_eq!(
        app["env"],
        json!([{"name": "AWS_ROLE_ARN", "value": ARN}, {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN}])
    );
    let mounts = app["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.contains(&json!({"name": "aws-iam-token", "mountPath": MOUNT, "readOnly": true})),
        "{mounts:?}"
    );
    // The API server's own kube-api-access volume is kept, ours is appended and defaulted.
    assert!(
        created.pod["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-")
    );
    assert_eq!(
        token_volume(&created.pod),
        json!({"name": "aws-iam-token", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken":
            {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}})
    );

    let plain = env.create(pod("plain", "plain", &[])).await;
    assert!(!has_token_volume(&plain.pod));
    assert!(
        container(&plain.pod, "containers", "app")
            .get("env")
            .is_none()
    );
    assert!(plain.warnings.is_empty());
    env.cleanup().await;
}

#[tokio::test]
async fn annotation_matrix() {
    let env = env("matrix").await;
    env.service_account(
        "tuned",
        &[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/audience", "custom-audience"),
            ("eks.amazonaws.com/token-expiration", "3600"),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ("eks.amazonaws.com/region", "eu-west-1"),
        ],
    )
    .await;
    env.service_account(
        "app",
        &[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/token-expiration", "100"),
        ],
    )
    .await;

    let tuned = env.create(pod("tuned", "tuned", &[])).await;
    assert_eq!(
        env_names(container(&tuned.pod, "containers", "app")),
        [
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );
    assert_eq!(
        container(&tuned.pod, "containers", "app")["env"][1]["value"],
        "eu-west-1"
    );
    let source = &token_volume(&tuned.pod)["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(
        (
            source["audience"].as_str(),
            source["expirationSeconds"].as_i64()
        ),
        (Some("custom-audience"), Some(3600))
    );

    // The 600 s floor, with a warning; and the pod annotation beating the ServiceAccount's.
    let floored = env.create(pod("floored", "app", &[])).await;
    assert_eq!(
        token_volume(&floored.pod)["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        600
    );
    assert_eq!(
        floored.warnings,
        [format!(
            "eks.amazonaws.com/token-expiration=100 on ServiceAccount {}/app is below the minimum: using 600",
            env.ns
        )]
    );
    let mut overridden = pod("overridden", "app", &[]);
    overridden["metadata"]["annotations"] = json!({"eks.amazonaws.com/token-expiration": "7200"});
    let overridden = env.create(overridden).await;
    assert_eq!(
        token_volume(&overridden.pod)["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        7200
    );

    // skip-containers and include-containers.
    let mut skipping = pod("skipping", "app", &["a", "b", "c"]);
    skipping["metadata"]["annotations"] = json!({"eks.amazonaws.com/skip-containers": "a, c"});
    let skipping = env.create(skipping).await;
    let injected = |p: &Value, n: &str| container(p, "containers", n).get("env").is_some();
    assert_eq!(
        [
            injected(&skipping.pod, "a"),
            injected(&skipping.pod, "b"),
            injected(&skipping.pod, "c")
        ],
        [false, true, false]
    );
    let mut including = pod("including", "app", &["a", "b", "c"]);
    including["metadata"]["annotations"] = json!({"eks.amazonaws.com/include-containers": "c"});
    let including = env.create(including).await;
    assert_eq!(
        [
            injected(&including.pod, "a"),
            injected(&including.pod, "b"),
            injected(&including.pod, "c")
        ],
        [false, false, true]
    );

    // Opt-out by annotation.
    let mut opted_out = pod("opted-out", "app", &[]);
    opted_out["metadata"]["annotations"] =
        json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
    let opted_out = env.create(opted_out).await;
    assert!(!has_token_volume(&opted_out.pod));

    // Windows, by node selector and by spec.os.
    let windows_token = r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token";
    let mut by_selector = pod("windows-selector", "app", &[]);
    by_selector["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
    let mut by_os = pod("windows-os", "app", &[]);
    by_os["spec"]["os"] = json!({"name": "windows"});
    for windows in [by_selector, by_os] {
        let created = env.create(windows).await;
        assert_eq!(
            container(&created.pod, "containers", "app")["env"][1]["value"],
            windows_token
        );
    }

    // Init containers and a native sidecar, whose restartPolicy must survive.
    let mut with_init = pod("with-init", "app", &[]);
    with_init["spec"]["initContainers"] = json!([
        {"name": "setup", "image": "registry.example/setup:1"},
        {"name": "proxy", "image": "registry.example/proxy:1", "restartPolicy": "Always"},
    ]);
    let with_init = env.create(with_init).await;
    for name in ["setup", "proxy"] {
        assert_eq!(
            env_names(container(&with_init.pod, "initContainers", name)),
            ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
        );
    }
    assert_eq!(
        container(&with_init.pod, "initContainers", "proxy")["restartPolicy"],
        "Always"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn opt_out_label_keeps_the_webhook_from_being_called() {
    let env = env("label").await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    let total = |env: &Env| {
        [
            "mutated",
            "already_mutated",
            "no_role",
            "opted_out",
            "ignored",
        ]
        .iter()
        .map(|d| {
            env.webhook.metric(&format!(
                "irsa_webhook_admissions_total{{decision=\"{d}\"}}"
            ))
        })
        .sum::<f64>()
    };
    let before = total(&env);
    let mut labelled = pod("labelled", "app", &[]);
    labelled["metadata"]["labels"] = json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
    let created = env.create(labelled).await;
    assert!(!has_token_volume(&created.pod));
    assert_eq!(
        total(&env),
        before,
        "the API server did not call the webhook"
    );
    // A control pod without the label does reach it.
    env.create(pod("control", "app", &[])).await;
    assert_eq!(total(&env), before + 1.0);
    env.cleanup().await;
}

#[tokio::test]
async fn service_account_created_just_before_its_pod_is_honoured() {
    let env = env("fresh-sa").await;
    for i in 0..5 {
        let name = format!("fresh-{i}");
        env.service_account(&name, &[("eks.amazonaws.com/role-arn", ARN)])
            .await;
        let created = env.create(pod(&name, &name, &[])).await;
        assert!(
            has_token_volume(&created.pod),
            "pod {i} not mutated: {:?}",
            created.warnings
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn warnings_reach_the_client() {
    let env = env("warnings").await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    env.service_account("bad-arn", &[("eks.amazonaws.com/role-arn", "my-role")])
        .await;

    let mut conflicting = pod("conflicting", "app", &[]);
    conflicting["spec"]["volumes"] = json!([{"name": "aws-iam-token", "emptyDir": {}}]);
    let created = env.create(conflicting).await;
    assert_eq!(
        created.warnings,
        [
            "the pod already has a volume named aws-iam-token that is not a service-account token: AWS credentials not injected; rename that volume"
        ]
    );
    assert!(
        container(&created.pod, "containers", "app")
            .get("env")
            .is_none()
    );

    let created = env.create(pod("bad-arn", "bad-arn", &[])).await;
    assert_eq!(
        created.warnings,
        [format!(
            "eks.amazonaws.com/role-arn=\"my-role\" on ServiceAccount {}/bad-arn is not a valid IAM role ARN (it must start with arn:; role names need --compose-role-arn and --aws-account-id): injected as is, STS will refuse it",
            env.ns
        )]
    );
    env.cleanup().await;
}

#[tokio::test]
async fn dry_run_creates_get_the_same_mutation() {
    let env = env("dry-run").await;
    env.service_account(
        "app",
        &[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/region", "ap-south-1"),
        ],
    )
    .await;
    let dry = env.create_pod(pod("same", "app", &[]), true).await;
    assert_eq!(dry.status, 201);
    let real = env.create(pod("same", "app", &[])).await;
    let app = |p: &Value| container(p, "containers", "app").clone();
    assert_eq!(app(&dry.pod)["env"], app(&real.pod)["env"]);
    assert_eq!(
        app(&dry.pod)["volumeMounts"][1],
        app(&real.pod)["volumeMounts"][1]
    );
    assert_eq!(token_volume(&dry.pod), token_volume(&real.pod));
    env.cleanup().await;
}

#[tokio::test]
async fn reinvocation_injects_a_container_added_by_a_later_webhook() {
    let env = env("reinvoke").await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    let sidecar = support::sidecar::SidecarWebhook::start();
    // Configurations run in name order: ours ("irsa-…") before this one ("zz-…").
    let name = format!("zz-sidecar-{}", env.ns);
    env.register_url(&name, "Fail", &sidecar.url(), &sidecar.ca_pem, "Never")
        .await;
    env.wait_until("the sidecar webhook to add its container", |c| {
        c.pod["spec"]["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == "late"))
    })
    .await;

    let created = env.create(pod("reinvoked", "app", &[])).await;
    let late = container(&created.pod, "containers", "late");
    assert_eq!(
        env_names(late),
        ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    );
    assert!(
        late["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "aws-iam-token")
    );
    assert_eq!(
        env_names(container(&created.pod, "containers", "app")),
        ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    );
    env.unregister(&name).await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_injected_volume_yields_a_token_the_api_server_signed() {
    let env = env("token").await;
    env.service_account(
        "app",
        &[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/token-expiration", "3600"),
        ],
    )
    .await;
    let created = env.create(pod("holder", "app", &[])).await;
    let source =
        token_volume(&created.pod)["projected"]["sources"][0]["serviceAccountToken"].clone();
    let audience = source["audience"].as_str().unwrap();
    let expiration = source["expirationSeconds"].as_i64().unwrap();

    let token = support::tokens::request_token(
        &env.client,
        &env.ns,
        "app",
        &created.pod,
        audience,
        expiration,
    )
    .await;
    let jwks = support::tokens::jwks(&env.client).await;
    let claims = support::tokens::verify(&token, &jwks, &cluster().issuer, audience);
    assert_eq!(claims["iss"], cluster().issuer);
    assert_eq!(claims["aud"], json!([audience]));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:app", env.ns)
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "holder");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, expiration);
    env.cleanup().await;
}

#[tokio::test]
async fn self_managed_certificate_is_shared_published_and_rotated_without_failed_requests() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    if support::cluster::skipped_on_own_cluster(
        "self_managed_certificate",
        "the API server must reach the webhook as https://localhost",
    ) {
        return;
    }
    let env = env("selfcert").await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    env.unregister(&env.config_name).await;
    let config_name = format!("irsa-selfcert-{}", env.ns);
    let args: Vec<String> = [
        "--kubeconfig",
        &cluster().kubeconfig.display().to_string(),
        "--cert-secret",
        "irsa-webhook-certs",
        "--cert-secret-namespace",
        &env.ns,
        "--cert-dns",
        "localhost",
        "--webhook-config",
        &config_name,
        "--cert-check-interval",
        "200ms",
    ]
    .map(String::from)
    .to_vec();
    // Two replicas start at once and race to create the Secret.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| support::Server::start_self_managed(&args));
        let b = s.spawn(|| support::Server::start_self_managed(&args));
        (a.join().unwrap(), b.join().unwrap())
    });
    let url = format!("https://localhost:{}/mutate", a.addr.port());
    env.register_url(&config_name, "Fail", &url, "", "IfNeeded")
        .await;
    env.wait_effective().await;

    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), &env.ns);
    let text =
        |s: &Secret, k: &str| String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap();
    let secret = secrets.get("irsa-webhook-certs").await.unwrap();
    let (old_ca, old_cert) = (text(&secret, "ca.crt"), text(&secret, "tls.crt"));
    let served = |addr, cas: Vec<String>| async move {
        let refs: Vec<&str> = cas.iter().map(String::as_str).collect();
        let stream =
            support::tls_connect(addr, support::roots(&refs), &[b"h2"], rustls::ALL_VERSIONS)
                .await
                .unwrap();
        support::peer_cert(&stream)
    };
    let der = |pem: &str| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    assert_eq!(served(a.addr, vec![old_ca.clone()]).await, der(&old_cert));
    assert_eq!(
        served(b.addr, vec![old_ca.clone()]).await,
        der(&old_cert),
        "both replicas serve the Secret's certificate"
    );

    // The caBundle is the Secret's CA and stays put: replicas agree, nobody flaps.
    let configs: kube::Api<MutatingWebhookConfiguration> = kube::Api::all(env.client.clone());
    let ca_bundle = |c: &MutatingWebhookConfiguration| {
        String::from_utf8(
            c.webhooks.as_ref().unwrap()[0]
                .client_config
                .ca_bundle
                .clone()
                .unwrap()
                .0,
        )
        .unwrap()
    };
    let before = configs.get(&config_name).await.unwrap();
    assert_eq!(ca_bundle(&before), old_ca);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = configs.get(&config_name).await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "caBundle rewritten without cause"
    );

    // Rotate to a new CA under load (failurePolicy Fail: a TLS failure would fail a create).
    let stop = Arc::new(AtomicBool::new(false));
    let (total, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn({
        let (client, ns) = (env.client.clone(), env.ns.clone());
        let (stop, total, failed) = (stop.clone(), total.clone(), failed.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let created =
                    support::e2e::create_pod(&client, &ns, pod("load", "app", &[]), true).await;
                total.fetch_add(1, Ordering::Relaxed);
                if created.status != 201 || !has_token_volume(&created.pod) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed during rotation: {created:?}");
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let next = irsa_webhook::certs::generate(&["localhost".into()], &[], 365).unwrap();
    let rotation = json!({"stringData": {
        "ca.crt": next.ca_cert, "ca.key": next.ca_key, "tls.crt": next.tls_cert, "tls.key": next.tls_key,
        "ca-previous.crt": old_ca,
    }});
    secrets
        .patch(
            "irsa-webhook-certs",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&rotation),
        )
        .await
        .unwrap();
    let started = Instant::now();
    while served(a.addr, vec![old_ca.clone(), next.ca_cert.clone()]).await != der(&next.tls_cert) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let rotated = configs.get(&config_name).await.unwrap();
    assert_eq!(
        ca_bundle(&rotated),
        format!("{}{}", next.ca_cert, old_ca),
        "old and new CA trusted"
    );
    assert_eq!(
        served(b.addr, vec![next.ca_cert.clone()]).await,
        der(&next.tls_cert)
    );
    let (total, failed) = (
        total.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("{total} admissions during the rotation, {failed} failed");
    assert!(total >= 10, "too little load to mean anything: {total}");
    assert_eq!(failed, 0);
    env.unregister(&config_name).await;
    env.cleanup().await;
}
