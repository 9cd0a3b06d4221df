//! `irsa-webhook doctor` against a real API server whose issuer is a public endpoint the test
//! controls, a webhook registered for each test's namespace, and moto as IAM: every check is
//! first seen passing, then each misconfiguration is set up and must be named with its fix.
//!
//! The public documents are shared, so the tests take turns.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{Env, Registration, pod};
use support::issuer::PublicIssuer;
use support::sts::{ACCOUNT, Moto, venv};

/// An audience the API server itself accepts, beside its issuer.
const CLUSTER_AUDIENCE: &str = "cluster-and-aws";

struct Setup {
    cluster: Cluster,
    issuer: PublicIssuer,
    moto: Moto,
    /// The issuer's CA in a file, for `--ca-file`.
    ca_file: PathBuf,
    role: String,
    _dir: tempfile::TempDir,
}

fn setup() -> Option<&'static Setup> {
    if support::cluster::skipped_on_own_cluster(
        "doctor",
        "it needs a control plane whose issuer is the test's own endpoint",
    ) {
        return None;
    }
    static SETUP: OnceLock<Setup> = OnceLock::new();
    Some(SETUP.get_or_init(|| {
        let issuer = PublicIssuer::start();
        let cluster = Cluster::start(ClusterOptions {
            issuer: Some(issuer.url.clone()),
            api_audiences: Some(format!("{},{CLUSTER_AUDIENCE}", issuer.url)),
            ..Default::default()
        });
        support::cluster::block_on(async {
            let client = cluster.client().await;
            let get = |path: &'static str| {
                let client = client.clone();
                async move {
                    let request = http::Request::get(path).body(Vec::new()).unwrap();
                    client.request_text(request).await.unwrap().into_bytes()
                }
            };
            let (discovery, jwks) = (
                get("/.well-known/openid-configuration").await,
                get("/openid/v1/jwks").await,
            );
            // As a discovery server publishes it: the keys on the issuer, not on the API server.
            let mut discovery: Value = serde_json::from_slice(&discovery).unwrap();
            discovery["jwks_uri"] = json!(format!("{}/openid/v1/jwks", issuer.url));
            issuer.set(|s| {
                s.discovery = serde_json::to_vec(&discovery).unwrap();
                s.jwks = jwks;
            });
        });
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_file, &issuer.ca_pem).unwrap();
        let moto = Moto::start_verifying(&venv());
        let role = format!("arn:aws:iam::{ACCOUNT}:role/doctor-app");
        Setup {
            cluster,
            issuer,
            moto,
            ca_file,
            role,
            _dir: dir,
        }
    }))
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The report of `doctor args` (JSON) and whether it exited 0.
fn doctor(setup: &Setup, args: &[&str]) -> (bool, Vec<Value>) {
    doctor_with(setup, &setup.cluster.kubeconfig, args)
}

/// The report of `doctor --kubeconfig kubeconfig args` (JSON) and whether it exited 0.
fn doctor_with(setup: &Setup, kubeconfig: &Path, args: &[&str]) -> (bool, Vec<Value>) {
    doctor_env(setup, kubeconfig, args, &[])
}

/// [`doctor_with`] with `env` overriding doctor's environment.
fn doctor_env(
    setup: &Setup,
    kubeconfig: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, Vec<Value>) {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .arg("doctor")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--output", "json", "--timeout", "8s"])
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .envs(setup.moto.credentials())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &setup.moto.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let checks = report["checks"].as_array().unwrap().clone();
    (output.status.success(), checks)
}

/// `doctor` for ServiceAccount `ns/sa`, trusting the issuer's CA, with `extra` flags.
fn account(setup: &Setup, ns: &str, sa: &str, extra: &[&str]) -> (bool, Vec<Value>) {
    let ca_file = setup.ca_file.display().to_string();
    let base = ["-n", ns, "--service-account", sa, "--ca-file", &ca_file];
    doctor(setup, &[&base[..], extra].concat())
}

/// The check `id`; panics with the whole report when it is missing.
fn check<'a>(checks: &'a [Value], id: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {}", pretty(checks)))
}

fn pretty(checks: &[Value]) -> String {
    serde_json::to_string_pretty(checks).unwrap()
}

/// Asserts `id` ended with `status` and its message contains `text`; anything but ok and skip
/// must say how to fix it.
fn expect(checks: &[Value], id: &str, status: &str, text: &str) {
    let found = check(checks, id);
    assert!(
        found["status"] == status && found["message"].as_str().unwrap().contains(text),
        "expected {id} {status} with {text:?}, got {}\nreport: {}",
        serde_json::to_string_pretty(found).unwrap(),
        pretty(checks)
    );
    if status != "ok" && status != "skip" {
        assert!(
            found["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{found}"
        );
    }
}

/// The IAM side as `trust-policy` and the docs say: a provider with the audience and the
/// issuer's thumbprint, and a role trusted for `ns/app`.
fn aws_side(setup: &Setup, ns: &str, thumbprint: &str) {
    let m = &setup.moto;
    for p in m.admin(&["iam", "list-open-id-connect-providers"])["OpenIDConnectProviderList"]
        .as_array()
        .unwrap()
    {
        m.admin(&[
            "iam",
            "delete-open-id-connect-provider",
            "--open-id-connect-provider-arn",
            p["Arn"].as_str().unwrap(),
        ]);
    }
    m.admin(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        &setup.issuer.url,
        "--client-id-list",
        "sts.amazonaws.com",
        "--thumbprint-list",
        thumbprint,
    ]);
    trust(setup, &format!("{ns}/app"));
}

/// (Re)creates the role trusted for `service_account` (NS/NAME, wildcards allowed) with the
/// policy `trust-policy` prints.
fn trust(setup: &Setup, service_account: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args(["trust-policy", "--issuer-url", &setup.issuer.url])
        .args([
            "--service-account",
            service_account,
            "--account-id",
            ACCOUNT,
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let policy = String::from_utf8(output.stdout).unwrap();
    let m = &setup.moto;
    // Absent the first time.
    let [id, secret] = m.credentials();
    let _ = m.aws(
        &[
            id,
            secret,
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &m.endpoint),
        ],
        &["iam", "delete-role", "--role-name", "doctor-app"],
    );
    m.admin(&[
        "iam",
        "create-role",
        "--role-name",
        "doctor-app",
        "--assume-role-policy-document",
        &policy,
    ]);
}

/// The SHA-1 thumbprint IAM would need for the issuer's certificate, as doctor reports it
/// without `--ca-file`.
fn thumbprint(setup: &Setup, ns: &str) -> String {
    let (_, checks) = doctor(setup, &["-n", ns, "--service-account", "app"]);
    let tls = check(&checks, "public.tls");
    let message = tls["message"].as_str().unwrap();
    let thumbprint = message.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(thumbprint.len(), 40, "{message}");
    assert!(
        thumbprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{message}"
    );
    thumbprint
}

/// A namespace with its webhook and ServiceAccount `app` annotated with the test role.
async fn env(setup: &Setup, test: &str) -> Env {
    let env = Env::new(&setup.cluster, test, Registration::default()).await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", &setup.role)])
        .await;
    env
}

#[tokio::test]
async fn a_healthy_chain_passes_every_check() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let env = env(setup, "doctor-ok").await;
    let thumbprint = thumbprint(setup, &env.ns);
    aws_side(setup, &env.ns, &thumbprint);
    env.create(pod("app-1", "app", &[])).await;
    let ca_file = setup.ca_file.display().to_string();
    let (passed, checks) = doctor(
        setup,
        &[
            "-n",
            &env.ns,
            "--pod",
            "app-1",
            "--aws",
            "--ca-file",
            &ca_file,
            "--issuer-url",
            &setup.issuer.url,
        ],
    );
    for id in [
        "issuer.api-server",
        "role.arn",
        "issuer.token",
        "issuer.flag",
        "public.discovery",
        "public.jwks",
        "keys.token",
        "keys.published",
        "audience.characters",
        "audience.api-server",
        "aws.identity",
        "issuer.iam-provider",
        "audience.client-id",
        "issuer.thumbprint",
        "role.exists",
        "role.trust",
        "webhook.config",
        "webhook.endpoints",
        "webhook.certificate",
        "pod.mutated",
        "pod.env",
        "pod.token-file",
    ] {
        expect(&checks, id, "ok", "");
    }
    // Trusted through --ca-file only: IAM needs the thumbprint, which the provider has.
    expect(&checks, "public.tls", "warn", &thumbprint);
    assert!(passed, "{}", pretty(&checks));

    // The text report: a line per check, fixes below, a summary; failures make the exit code.
    let text = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args(["doctor", "--kubeconfig"])
        .arg(&setup.cluster.kubeconfig)
        .args(["-n", &env.ns, "--service-account", "app", "--issuer-url"])
        .arg(format!("{}/", setup.issuer.url))
        .output()
        .unwrap();
    let stdout = String::from_utf8(text.stdout.clone()).unwrap();
    println!("{stdout}");
    assert!(!text.status.success());
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("check(s) failed"),
        "{text:?}"
    );
    assert!(stdout.contains("\nok   keys.token "), "{stdout}");
    assert!(stdout.contains("\nFAIL issuer.flag "), "{stdout}");
    assert!(
        stdout.contains("  fix: use exactly the API server's"),
        "{stdout}"
    );
    assert!(stdout.contains(" failed, "), "{stdout}");
    env.cleanup().await;
}

#[tokio::test]
async fn issuer_differences_and_public_documents_sts_would_refuse_are_named() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let env = env(setup, "doctor-public").await;
    let run = |extra: &[&str]| account(setup, &env.ns, "app", extra);

    let slash = format!("{}/", setup.issuer.url);
    let (passed, checks) = run(&["--issuer-url", &slash]);
    assert!(!passed);
    expect(&checks, "issuer.flag", "fail", "trailing slash");
    let other = setup.issuer.url.replace("127.0.0.1", "localhost");
    let (_, checks) = run(&["--issuer-url", &other]);
    expect(
        &checks,
        "issuer.flag",
        "fail",
        "host \"localhost\" vs \"127.0.0.1\"",
    );

    // Not publicly trusted and no --ca-file: the thumbprint IAM would need.
    let (passed, checks) = doctor(setup, &["-n", &env.ns, "--service-account", "app"]);
    assert!(!passed);
    expect(
        &checks,
        "public.tls",
        "fail",
        "not trusted by the public roots",
    );

    let good = setup.issuer.served();
    let mut wrong: Value = serde_json::from_slice(&good.discovery).unwrap();
    wrong["issuer"] = json!("https://old.example");
    setup
        .issuer
        .set(|s| s.discovery = serde_json::to_vec(&wrong).unwrap());
    let (_, checks) = run(&[]);
    expect(&checks, "public.discovery", "fail", "https://old.example");

    setup.issuer.set(|s| {
        s.discovery = good.discovery.clone();
        s.status = 404;
    });
    let (_, checks) = run(&[]);
    expect(&checks, "public.discovery", "fail", "HTTP 404");

    setup.issuer.set(|s| {
        s.status = 200;
        s.delay = Duration::from_millis(1200);
    });
    let (_, checks) = run(&[]);
    expect(&checks, "public.discovery", "warn", "took 1");

    // A key set from before a rotation: the token's key is not published.
    let mut stale: Value = serde_json::from_slice(&good.jwks).unwrap();
    stale["keys"][0]["kid"] = json!("retired-key");
    setup.issuer.set(|s| {
        s.delay = Duration::ZERO;
        s.jwks = serde_json::to_vec(&stale).unwrap();
    });
    let (passed, checks) = run(&[]);
    assert!(!passed);
    expect(&checks, "keys.token", "fail", "is not in the public JWKS");
    expect(
        &checks,
        "keys.published",
        "fail",
        "stale after a key rotation",
    );
    setup.issuer.set(|s| *s = good.clone());
    let (_, checks) = run(&[]);
    expect(&checks, "keys.token", "ok", "");
    env.cleanup().await;
}

#[tokio::test]
async fn audiences_and_role_annotations_are_checked() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let env = env(setup, "doctor-audience").await;
    let run = |sa: &str| account(setup, &env.ns, sa, &[]);
    let aud = "eks.amazonaws.com/audience";
    let role = "eks.amazonaws.com/role-arn";
    env.service_account(
        "both",
        &[(role, setup.role.as_str()), (aud, CLUSTER_AUDIENCE)],
    )
    .await;
    let (_, checks) = run("both");
    expect(
        &checks,
        "audience.api-server",
        "warn",
        "also authenticates to this cluster",
    );
    let (_, checks) = run("app");
    expect(&checks, "audience.api-server", "ok", "does not accept");

    env.service_account(
        "hidden",
        &[
            (role, setup.role.as_str()),
            (aud, "sts.amazonaws.com\u{200b}"),
        ],
    )
    .await;
    let (_, checks) = run("hidden");
    expect(&checks, "audience.characters", "fail", "U+200B");

    env.service_account(
        "none",
        &[("eks.amazonaws.com/role_arn", setup.role.as_str())],
    )
    .await;
    let (passed, checks) = run("none");
    assert!(!passed);
    expect(
        &checks,
        "role.arn",
        "fail",
        "has no eks.amazonaws.com/role-arn annotation",
    );
    expect(&checks, "role.arn", "fail", "role-arn");

    env.service_account("short", &[(role, "arn:aws:iam::1234:role/x")])
        .await;
    let (_, checks) = run("short");
    expect(&checks, "role.arn", "fail", "12 digits");
    let (_, checks) = run("missing");
    expect(&checks, "serviceaccount", "fail", "does not exist");
    env.cleanup().await;
}

#[tokio::test]
async fn the_aws_side_is_compared_with_the_token() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let env = env(setup, "doctor-aws").await;
    let thumbprint = thumbprint(setup, &env.ns);
    aws_side(setup, &env.ns, &thumbprint);
    let run = |sa: &str| account(setup, &env.ns, sa, &["--aws"]);
    let (passed, checks) = run("app");
    expect(&checks, "role.trust", "ok", "assume doctor-app");
    assert!(passed, "{}", pretty(&checks));

    // An audience IAM does not know.
    env.service_account(
        "other-aud",
        &[
            ("eks.amazonaws.com/role-arn", setup.role.as_str()),
            ("eks.amazonaws.com/audience", "other"),
        ],
    )
    .await;
    let (_, checks) = run("other-aud");
    expect(
        &checks,
        "audience.client-id",
        "fail",
        "\"other\" is not among",
    );
    expect(&checks, "role.trust", "fail", "does not match \"other\"");

    // A ServiceAccount the trust policy does not name.
    env.service_account(
        "stranger",
        &[("eks.amazonaws.com/role-arn", setup.role.as_str())],
    )
    .await;
    let (_, checks) = run("stranger");
    expect(
        &checks,
        "role.trust",
        "fail",
        &format!("system:serviceaccount:{}:stranger", env.ns),
    );

    // A wildcard lets it in, with a warning.
    trust(setup, &format!("{}/*", env.ns));
    let (_, checks) = run("stranger");
    expect(&checks, "role.trust", "warn", "wildcarded");

    // A role that does not exist.
    let missing = format!("arn:aws:iam::{ACCOUNT}:role/nobody");
    env.service_account("ghost", &[("eks.amazonaws.com/role-arn", missing.as_str())])
        .await;
    let (_, checks) = run("ghost");
    expect(&checks, "role.exists", "fail", "role nobody does not exist");

    // The provider registered for another path of the same host, without the thumbprint.
    let m = &setup.moto;
    let arn = format!(
        "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
        setup.issuer.url.trim_start_matches("https://")
    );
    m.admin(&[
        "iam",
        "delete-open-id-connect-provider",
        "--open-id-connect-provider-arn",
        &arn,
    ]);
    let old = format!("{}/old", setup.issuer.url);
    m.admin(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        &old,
        "--client-id-list",
        "sts.amazonaws.com",
    ]);
    let (passed, checks) = run("app");
    assert!(!passed);
    expect(
        &checks,
        "issuer.iam-provider",
        "fail",
        "path \"\" vs \"/old\"",
    );
    m.admin(&[
        "iam",
        "create-open-id-connect-provider",
        "--url",
        &setup.issuer.url,
        "--client-id-list",
        "sts.amazonaws.com",
    ]);
    let (_, checks) = run("app");
    expect(&checks, "issuer.iam-provider", "ok", "");
    expect(&checks, "issuer.thumbprint", "fail", &thumbprint);

    // moto verifies every signature: one made with a wrong secret is refused and named.
    let ca_file = setup.ca_file.display().to_string();
    let args = [
        "-n",
        &env.ns,
        "--service-account",
        "app",
        "--ca-file",
        &ca_file,
        "--aws",
    ];
    let kubeconfig = &setup.cluster.kubeconfig;
    let forged = [("AWS_SECRET_ACCESS_KEY", "wrong")];
    let (passed, checks) = doctor_env(setup, kubeconfig, &args, &forged);
    assert!(!passed);
    expect(
        &checks,
        "aws.identity",
        "fail",
        "sts:GetCallerIdentity: SignatureDoesNotMatch",
    );
    env.cleanup().await;
}

#[tokio::test]
async fn pods_that_were_not_mutated_say_why() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let mut env = env(setup, "doctor-pods").await;
    let (ns, ca_file) = (env.ns.clone(), setup.ca_file.display().to_string());
    let run = |pod: &str| doctor(setup, &["-n", &ns, "--pod", pod, "--ca-file", &ca_file]);

    // Annotated after the pod was created.
    env.service_account("late", &[]).await;
    env.create(pod("early", "late", &[])).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    sas.patch(
        "late",
        &kube::api::PatchParams::apply("e2e-annotate"),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": setup.role}}}),
        ),
    )
    .await
    .unwrap();
    let (passed, checks) = run("early");
    assert!(!passed);
    expect(&checks, "pod.mutated", "fail", "a copy created now is");

    // Opted out.
    let mut opted = pod("opted", "app", &[]);
    opted["metadata"]["labels"] = json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
    env.create(opted).await;
    let (_, checks) = run("opted");
    expect(&checks, "pod.mutated", "ok", "opted out");

    // Static keys beat the web identity token in every SDK.
    let mut keyed = pod("keyed", "app", &["app", "sidecar"]);
    keyed["spec"]["containers"][0]["env"] = json!([
        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIA"},
        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/own"},
    ]);
    env.create(keyed).await;
    let (_, checks) = run("keyed");
    expect(&checks, "pod.mutated", "ok", "");
    expect(
        &checks,
        "pod.env",
        "warn",
        "container app sets AWS_ACCESS_KEY_ID",
    );

    // The webhook was down when the pod was created (failurePolicy Ignore).
    env.webhook.stop();
    env.create(pod("while-down", "app", &[])).await;
    let (_, checks) = run("while-down");
    expect(&checks, "pod.mutated", "fail", "is not either");
    expect(
        &checks,
        "webhook.certificate",
        "warn",
        "cannot reach the webhook",
    );

    // A caBundle that does not trust the serving certificate.
    env.webhook.restart();
    let stranger = irsa_webhook::certs::generate(&["x".into()], &[], 30).unwrap();
    let url = format!("https://{}/mutate", env.webhook.addr);
    env.register_url(
        &env.config_name,
        "Ignore",
        &url,
        &stranger.ca_cert,
        "IfNeeded",
    )
    .await;
    let (_, checks) = run("keyed");
    expect(&checks, "webhook.certificate", "fail", "does not trust");

    // Called through a Service that has no ready endpoints.
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let service = json!({"metadata": {"name": "irsa-webhook"},
        "spec": {"ports": [{"port": 443, "targetPort": 8443}], "selector": {"app": "none"}}});
    services
        .create(
            &Default::default(),
            &serde_json::from_value(service).unwrap(),
        )
        .await
        .unwrap();
    let configs: kube::Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = kube::Api::all(env.client.clone());
    let patch = json!({"webhooks": [{"name": "pods.irsa-webhook.e2e", "clientConfig": {
        "url": null, "service": {"name": "irsa-webhook", "namespace": env.ns, "port": 443}}}]});
    configs
        .patch(
            &env.config_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
        .unwrap();
    let (_, checks) = run("keyed");
    expect(
        &checks,
        "webhook.endpoints",
        "fail",
        "has no ready endpoints",
    );

    // A namespace no webhook selects.
    env.unregister(&env.config_name).await;
    let (_, checks) = run("keyed");
    expect(&checks, "webhook.config", "fail", "");
    env.cleanup().await;
}

/// The ids of `checks`, in order.
fn ids(checks: &[Value]) -> Vec<&str> {
    checks.iter().map(|c| c["id"].as_str().unwrap()).collect()
}

/// A kubeconfig that acts as ServiceAccount `ns/name` (impersonated by the admin), so requests
/// are authorized exactly by what that ServiceAccount is granted.
fn acting_as(setup: &Setup, ns: &str, name: &str, dir: &Path) -> PathBuf {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(&setup.cluster.kubeconfig).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{ns}:{name}"));
        }
    }
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    path
}

/// ServiceAccount `runner` with what the chart's `helm test` grants: create pods, get the
/// probe ServiceAccount `probe_sa`; nothing cluster-wide.
async fn runner(env: &Env, probe_sa: &str) {
    env.service_account("runner", &[]).await;
    let roles: kube::Api<k8s_openapi::api::rbac::v1::Role> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let role = json!({"metadata": {"name": "runner"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": [probe_sa], "verbs": ["get"]},
    ]});
    roles
        .create(&Default::default(), &serde_json::from_value(role).unwrap())
        .await
        .unwrap();
    let bindings: kube::Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let binding = json!({"metadata": {"name": "runner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"},
        "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": env.ns}]});
    bindings
        .create(
            &Default::default(),
            &serde_json::from_value(binding).unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn webhook_only_proves_the_webhook_mutates_a_pod_of_the_service_account() {
    let Some(setup) = setup() else { return };
    let _turn = SERIAL.lock().await;
    let mut env = env(setup, "doctor-webhook-only").await;
    let dir = tempfile::tempdir().unwrap();
    let ns = env.ns.clone();
    let admin = setup.cluster.kubeconfig.clone();
    let run = |kubeconfig: &Path, extra: &[&str]| {
        let base = ["--webhook-only", "-n", &ns, "--service-account", "app"];
        doctor_with(setup, kubeconfig, &[&base[..], extra].concat())
    };

    // Healthy, with the admin's view: the configuration, endpoint and certificate too, and
    // nothing of the issuer, the public documents or AWS.
    let (passed, checks) = run(&admin, &[]);
    assert!(passed, "{}", pretty(&checks));
    assert_eq!(
        ids(&checks),
        [
            "role.arn",
            "webhook.config",
            "webhook.endpoints",
            "webhook.certificate",
            "webhook.dry-run"
        ],
        "{}",
        pretty(&checks)
    );
    expect(
        &checks,
        "webhook.dry-run",
        "ok",
        &format!(
            "a pod of {ns}/app created now (dry run) is mutated by {}/pods.irsa-webhook.e2e: aws-iam-token volume with audience \"sts.amazonaws.com\", AWS_ROLE_ARN={}, AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            env.config_name, setup.role
        ),
    );

    // Only what the chart's helm test grants: the cluster-scoped reads are skipped, the dry
    // run still proves the webhook.
    runner(&env, "app").await;
    let limited = acting_as(setup, &ns, "runner", dir.path());
    let (passed, checks) = run(&limited, &[]);
    assert!(passed, "{}", pretty(&checks));
    assert_eq!(
        ids(&checks),
        ["role.arn", "webhook.config", "webhook.dry-run"],
        "{}",
        pretty(&checks)
    );
    expect(
        &checks,
        "webhook.config",
        "skip",
        "may not read MutatingWebhookConfigurations",
    );
    expect(
        &checks,
        "webhook.dry-run",
        "ok",
        "is mutated: aws-iam-token volume",
    );
    // ... and a ServiceAccount it may not read is named as such.
    let (passed, checks) = doctor_with(
        setup,
        &limited,
        &["--webhook-only", "-n", &ns, "--service-account", "probe"],
    );
    assert!(!passed);
    expect(&checks, "serviceaccount", "fail", "forbidden");

    // The webhook is down and failurePolicy is Ignore: the pod goes through unmutated.
    env.webhook.stop();
    let (passed, checks) = run(&admin, &[]);
    assert!(!passed);
    expect(
        &checks,
        "webhook.dry-run",
        "fail",
        "could not call the webhook and, with failurePolicy Ignore, let the pod through unmutated",
    );
    expect(
        &checks,
        "webhook.certificate",
        "warn",
        "cannot reach the webhook",
    );
    let (passed, checks) = run(&limited, &[]);
    assert!(!passed);
    expect(
        &checks,
        "webhook.dry-run",
        "fail",
        "either the webhook could not be called and its failurePolicy is Ignore",
    );

    // Right after an install the webhook may still be starting: --retry-for waits for it.
    let retrying = std::thread::scope(|scope| {
        let doctor = scope.spawn(|| run(&limited, &["--retry-for", "40s"]));
        std::thread::sleep(Duration::from_secs(3));
        env.webhook.restart();
        doctor.join().unwrap()
    });
    let (passed, checks) = retrying;
    assert!(passed, "{}", pretty(&checks));
    expect(&checks, "webhook.dry-run", "ok", " attempts in ");

    // failurePolicy Fail and a caBundle that does not trust the serving certificate: the API
    // server's refusal is shown with what to do about it.
    let stranger = irsa_webhook::certs::generate(&["x".into()], &[], 30).unwrap();
    let url = format!("https://{}/mutate", env.webhook.addr);
    env.register_url(
        &env.config_name,
        "Fail",
        &url,
        &stranger.ca_cert,
        "IfNeeded",
    )
    .await;
    env.wait_until("the untrusted caBundle to take effect", |created| {
        created.status >= 400
    })
    .await;
    let (passed, checks) = run(&limited, &[]);
    assert!(!passed);
    expect(&checks, "webhook.dry-run", "fail", "x509");
    let dry_run = check(&checks, "webhook.dry-run");
    assert!(
        dry_run["fix"]
            .as_str()
            .unwrap()
            .contains("caBundle does not trust"),
        "{dry_run}"
    );
    env.cleanup().await;
}
