//! The project as its users run it, on a real node (`tests/cluster/node/node.sh`): the image
//! built by `scripts/build-image.sh` and imported into containerd, the chart installed with
//! helm into a namespace that enforces the `restricted` Pod Security level, an unchanged
//! Deployment whose pod reads a kubelet-projected token and gets its role from STS (moto) with
//! the AWS CLI, the chart's discovery server serving the keys that verify that token, a rolling
//! restart of the webhook under `failurePolicy: Fail`, and `helm test`.
//!
//! Everything stays on this machine: pods live in network namespaces on a bridge made by the
//! node, reach the host only at the node's address (moto listens there), and have no default
//! route. One test, in steps, because the steps build on each other and there is one node.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use support::chaos;
use support::helm::{Helm, chart};
use support::node::Node;
use support::sts::{ACCOUNT, Moto};

const NS: &str = "irsa-system";
const APPS: &str = "apps";
const RELEASE: &str = "irsa";
const ROLE: &str = "node-app";
const LIMIT: Duration = Duration::from_secs(120);

/// `localhost/irsa-webhook:dev` from the binary these tests were built with.
fn webhook_image(dir: &Path) -> PathBuf {
    let output = dir.join("irsa-webhook-image.tar");
    let status = std::process::Command::new("bash")
        .arg(support::helm::repo().join("scripts/build-image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_irsa-webhook"), "--output"])
        .arg(&output)
        .status()
        .expect("cannot run scripts/build-image.sh");
    assert!(status.success(), "scripts/build-image.sh failed");
    output
}

fn helm(node: &Node, args: &[&str]) -> Result<String, String> {
    let mut command = Helm::V3.command();
    command
        .arg(format!("--kubeconfig={}", node.kubeconfig.display()))
        .args(args);
    support::run(command, None)
}

/// The pods of `selector` in `namespace` once `count` of them are Running and Ready.
fn ready_pods(node: &Node, namespace: &str, selector: &str, count: usize) -> Vec<Value> {
    node.wait(
        &format!("{count} ready pods {selector} in {namespace}"),
        LIMIT,
        || {
            let list = node.json(&["get", "pods", "-n", namespace, "-l", selector]);
            let ready: Vec<Value> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["phase"] == "Running"
                        && p["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                })
                .cloned()
                .collect();
            (ready.len() == count).then_some(ready)
        },
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn exec(node: &Node, namespace: &str, pod: &str, script: &str) -> String {
    node.kubectl(&["exec", "-n", namespace, pod, "--", "sh", "-c", script])
        .unwrap_or_else(|e| panic!("in pod {namespace}/{pod}: {e}"))
}

/// One node per machine: the tests take turns.
static ONE_NODE: Mutex<()> = Mutex::new(());

#[test]
fn the_chart_runs_on_a_real_node_and_an_unchanged_pod_gets_its_role() {
    let _turn = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let image = webhook_image(work.path());
    let mut node = Node::start(&[&image]);
    // The version asked for runs: the API server and the kubelet alike.
    let version = node.json(&["version"]);
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let kubelet = node.json(&["get", "node", "irsa-node"])["status"]["nodeInfo"]["kubeletVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kubelet, server, "kubelet and API server of one release");
    eprintln!("real node: Kubernetes {server}");

    // -- The chart, installed as a user would, into a namespace enforcing `restricted`.
    node.kubectl(&["create", "namespace", NS]).unwrap();
    node.kubectl(&[
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=restricted",
    ])
    .unwrap();
    let chart = chart();
    let issuer = node.api_url.clone();
    let values = [
        "image.repository=localhost/irsa-webhook".to_owned(),
        "image.tag=dev".into(),
        "image.pullPolicy=Never".into(),
        "awsDefaultRegion=us-east-1".into(),
        "discovery.enabled=true".into(),
        format!("discovery.issuerUrl={issuer}"),
        // The certificate rotation of the chaos run is picked up within seconds.
        "certificates.self.checkInterval=5s".into(),
    ];
    let mut install = vec![
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "180s",
    ];
    for value in &values {
        install.extend(["--set", value]);
    }
    helm(&node, &install).unwrap_or_else(|e| panic!("helm install: {e}"));

    let webhooks = ready_pods(&node, NS, "app.kubernetes.io/component=webhook", 2);
    for pod in &webhooks {
        let spec = &pod["spec"];
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{spec}");
        let container = &spec["containers"][0];
        assert_eq!(container["image"], "localhost/irsa-webhook:dev");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
    }
    let pdb = node.json(&["get", "poddisruptionbudget", "-n", NS]);
    assert_eq!(
        pdb["items"].as_array().unwrap().len(),
        2,
        "webhook and discovery PDBs: {pdb}"
    );
    let config = node.json(&[
        "get",
        "mutatingwebhookconfiguration",
        &format!("{RELEASE}-irsa-webhook"),
    ]);
    let ca_bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !ca_bundle.is_empty(),
        "the self-managed caBundle is written: {config}"
    );

    // -- STS (moto) where pods reach it: on the node's address, never on 127.0.0.1.
    let moto = Moto::start_on(&support::sts::venv(), node.ip.parse().unwrap());
    let role_arn = moto.admin(&[
        "iam",
        "create-role",
        "--role-name",
        ROLE,
        "--assume-role-policy-document",
        &json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{}", issuer.trim_start_matches("https://"))},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {format!("{}:sub", issuer.trim_start_matches("https://")): format!("system:serviceaccount:{APPS}:app")}}
            }]
        })
        .to_string(),
    ])["Role"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();

    // -- An annotated ServiceAccount and an unchanged Deployment (only the test's STS endpoint).
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {APPS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: {APPS}
  annotations:
    eks.amazonaws.com/role-arn: {role_arn}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {APPS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      serviceAccountName: app
      containers:
      - name: app
        image: localhost/aws-cli:dev
        imagePullPolicy: Never
        env:
        - {{name: AWS_ENDPOINT_URL_STS, value: "{}"}}
"#,
        moto.endpoint
    ));
    let app = ready_pods(&node, APPS, "app=app", 1).remove(0);
    let pod = app["metadata"]["name"].as_str().unwrap().to_owned();
    let env = exec(&node, APPS, &pod, "env");
    assert!(env.contains(&format!("AWS_ROLE_ARN={role_arn}")), "{env}");
    let token = exec(&node, APPS, &pod, "cat \"$AWS_WEB_IDENTITY_TOKEN_FILE\"");
    let claims = claims(token.trim());
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]), "{claims}");
    assert_eq!(claims["sub"], format!("system:serviceaccount:{APPS}:app"));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], pod.as_str());
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        app["metadata"]["uid"]
    );
    assert_eq!(claims["kubernetes.io"]["node"]["name"], "irsa-node");
    assert_eq!(claims["iss"], issuer.as_str());

    let identity: Value = serde_json::from_str(&exec(
        &node,
        APPS,
        &pod,
        "aws sts get-caller-identity --output json",
    ))
    .unwrap();
    let arn = identity["Arn"].as_str().unwrap();
    assert!(
        arn.starts_with(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/")),
        "the AWS CLI in the pod assumed the role: {identity}"
    );
    let assumed = moto.requests("AssumeRoleWithWebIdentity");
    let call = assumed
        .last()
        .expect("the pod called AssumeRoleWithWebIdentity");
    assert_eq!(call.form["RoleArn"], role_arn);
    assert_eq!(
        call.form["WebIdentityToken"],
        token.trim(),
        "the kubelet's token reached STS"
    );

    // -- The chart's discovery server publishes the keys that verify that token (moto does
    //    not verify tokens; STS would).
    let discovery = ready_pods(&node, NS, "app.kubernetes.io/component=discovery", 2);
    let ip = discovery[0]["status"]["podIP"].as_str().unwrap();
    let document: Value = serde_json::from_str(
        &support::http_get(
            format!("{ip}:8080").parse().unwrap(),
            "/.well-known/openid-configuration",
        )
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(document["issuer"], issuer.as_str());
    let jwks_path = document["jwks_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(issuer.as_str())
        .expect("jwks_uri on the issuer")
        .to_owned();
    let (status, jwks) =
        support::http_get(format!("{ip}:8080").parse().unwrap(), &jwks_path).unwrap();
    assert_eq!(status, 200, "{jwks}");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
    let verified = support::tokens::verify(token.trim(), &jwks, &issuer, "sts.amazonaws.com");
    assert_eq!(verified["sub"], claims["sub"]);

    // -- helm test: the chart's own hook proves mutation right after install.
    let tested = helm(&node, &["test", RELEASE, "-n", NS, "--timeout", "120s"])
        .unwrap_or_else(|e| panic!("helm test: {e}"));
    assert!(
        tested.contains("Phase:          Succeeded") || tested.contains("Succeeded"),
        "{tested}"
    );

    chaos_loses_no_pod(&node);
    helm_test_names_a_missing_image(&node, &values);
    node.stop();
}

/// `helm upgrade` of the release with the install's `values`, then `more` arguments.
fn upgrade(node: &Node, values: &[String], more: &[&str]) {
    let chart = chart();
    let mut args = vec!["upgrade", RELEASE, chart.to_str().unwrap(), "-n", NS];
    for value in values {
        args.extend(["--set", value]);
    }
    args.extend(more);
    helm(node, &args).unwrap_or_else(|e| panic!("helm upgrade: {e}"));
}

/// The faults of a webhook's life while pods are created without pause through both failure
/// policies (`tests/it/support/chaos.rs`): five rolling restarts, a graceful pod delete and a
/// certificate rotation lose nothing, neither a refused create under `Fail` nor a pod without
/// its injection under the chart's default `Ignore`; pods created after an API server restart
/// are injected; the discovery Deployment rolls without a failed JWKS fetch; a SIGKILL and a
/// network cut cost only calls made before the kubelet and the endpoints noticed.
/// With `IRSA_NODE_CHAOS=short` (the test command's run on the oldest Kubernetes) two rolling
/// restarts instead of five, and none of the ungraceful faults.
fn chaos_loses_no_pod(node: &Node) {
    let short = std::env::var("IRSA_NODE_CHAOS").is_ok_and(|v| v == "short");
    let plan = chaos::Plan {
        namespace: NS.into(),
        webhook: format!("{RELEASE}-irsa-webhook"),
        secret: format!("{RELEASE}-irsa-webhook-tls"),
        discovery: Some(format!("{RELEASE}-irsa-webhook-discovery")),
        rollouts: if short { 2 } else { 5 },
        per_policy: 2,
        rate: 5.0,
        rotate_certificate: true,
        ungraceful: !short,
    };
    let outcomes = chaos::run(node, &plan);
    let report = &outcomes.report;
    eprintln!("{}", report.table());
    eprintln!("{}", chaos::Drain::summary(&outcomes.drains));
    assert!(
        outcomes.drains.len() >= 2 * plan.rollouts,
        "every rolled webhook pod logged its drain: {:#?}",
        outcomes.drains
    );
    for phase in chaos::GRACEFUL {
        let losses = report.losses_in(phase);
        assert!(
            losses.is_empty(),
            "{phase}: {losses:#?}\n{}",
            report.table()
        );
        let unavailable = report
            .in_phase(phase)
            .filter(|s| matches!(s.outcome, chaos::Outcome::Unavailable(_)))
            .count();
        assert_eq!(unavailable, 0, "{phase}\n{}", report.table());
    }
    let rolling = report.in_phase(chaos::GRACEFUL[1]).count();
    assert!(
        rolling >= 20 * plan.rollouts,
        "too few creates to mean anything: {rolling}"
    );
    if !plan.ungraceful {
        return;
    }
    let after_restart = report.losses_in(chaos::APISERVER[1]);
    assert!(after_restart.is_empty(), "{after_restart:#?}");
    assert!(
        outcomes.fetch_failures.is_empty(),
        "{} of {} JWKS fetches failed while discovery rolled: {:#?}",
        outcomes.fetch_failures.len(),
        outcomes.fetches,
        outcomes.fetch_failures
    );
    assert!(outcomes.fetches >= 100, "{} fetches", outcomes.fetches);
    for recovered in [chaos::UNGRACEFUL[1], chaos::UNGRACEFUL[3]] {
        let losses = report.losses_in(recovered);
        assert!(losses.is_empty(), "{recovered}: {losses:#?}");
    }
}

/// `bench/rollout.sh`: the chaos run against the cluster of `scripts/dev-cluster.sh` (its state
/// directory in `$IRSA_ROLLOUT_STATE`), `$IRSA_ROLLOUTS` rolling restarts under
/// `$IRSA_ROLLOUT_RATE` creates a second, then the ungraceful faults; prints the table.
#[test]
#[ignore = "a benchmark: bench/rollout.sh runs it against scripts/dev-cluster.sh's cluster"]
fn rollout_benchmark() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/rollout.sh"))
    };
    let node = Node::attach(Path::new(&var("IRSA_ROLLOUT_STATE")));
    let rate: f64 = var("IRSA_ROLLOUT_RATE")
        .parse()
        .expect("IRSA_ROLLOUT_RATE: creates a second");
    let per_policy = 2;
    let plan = chaos::Plan {
        namespace: "irsa-system".into(),
        webhook: "irsa-webhook".into(),
        secret: "irsa-webhook-tls".into(),
        discovery: None,
        rollouts: var("IRSA_ROLLOUTS")
            .parse()
            .expect("IRSA_ROLLOUTS: a number"),
        per_policy,
        rate: rate / (2 * per_policy) as f64,
        rotate_certificate: false,
        ungraceful: var("IRSA_ROLLOUT_FAULTS") == "1",
    };
    let outcomes = chaos::run(&node, &plan);
    println!("{}", outcomes.report.table());
    println!("{}", chaos::Drain::summary(&outcomes.drains));
    for phase in chaos::GRACEFUL {
        for loss in outcomes.report.losses_in(phase) {
            println!("lost in {phase}: {loss}");
        }
    }
}

/// With an image that is not on the node, `helm test` fails and the test pod says why.
fn helm_test_names_a_missing_image(node: &Node, values: &[String]) {
    upgrade(node, values, &["--set", "image.tag=missing"]);
    let error = helm(node, &["test", RELEASE, "-n", NS, "--timeout", "30s"])
        .expect_err("helm test must fail without the image");
    let test_pod = format!("{RELEASE}-irsa-webhook-test");
    let pod = node.json(&["get", "pod", "-n", NS, &test_pod]);
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImageNeverPull", "{error}\n{pod}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or_default()
            .contains("localhost/irsa-webhook:missing"),
        "{waiting}"
    );
}

/// The README's "Try it on a real node without Docker" block, run as written by bash in a home
/// of its own (the caches stay the machine's), with `scripts/dev-cluster.sh down` again at the
/// end, also when the test panics.
struct Quickstart {
    home: tempfile::TempDir,
}

impl Quickstart {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `script` with bash in the repository: stdout, or the error output.
    fn run(&self, script: &str) -> Result<String, String> {
        let cache = std::env::var_os("IRSA_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/irsa-webhook")
            });
        let mut bash = std::process::Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", script])
            .current_dir(support::helm::repo())
            .env("HOME", self.home.path())
            .env("IRSA_CACHE_DIR", cache)
            // The binary under test, instead of a release build.
            .env("IRSA_DEV_BINARY", env!("CARGO_BIN_EXE_irsa-webhook"))
            .env_remove("KUBECONFIG");
        support::run(bash, None)
    }

    fn state(&self) -> PathBuf {
        self.home
            .path()
            .join(".local/state/irsa-webhook/dev-cluster")
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.run("scripts/dev-cluster.sh down");
    }
}

/// The README's block, between its ```sh fence and the closing one.
fn readme_quickstart() -> String {
    let readme = std::fs::read_to_string(support::helm::repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Try it on a real node without Docker\n")
        .nth(1)
        .expect("the README has the real-node quickstart");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block in that section");
    block.to_owned()
}

/// What a node whose owner was killed before its `down` leaves: its state directory (the host's
/// settings as it found them, pid files of processes that are gone), the machine's claim on it,
/// and its bridge.
fn leave_a_killed_node_behind() -> PathBuf {
    let state = tempfile::Builder::new()
        .prefix("irsa-node-killed-")
        .tempdir()
        .unwrap()
        .keep();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::create_dir_all(state.join("pids")).unwrap();
    std::fs::write(state.join("pids/etcd.pid"), gone.id().to_string()).unwrap();
    let host: String = ["/var/lib/kubelet", "/var/log/containers", "/var/lib/cni"]
        .iter()
        .filter(|dir| Path::new(dir).exists())
        .map(|dir| format!("existed {dir}\n"))
        .collect();
    std::fs::write(state.join("host.saved"), host).unwrap();
    std::fs::write("/run/irsa-node.state", state.to_str().unwrap()).unwrap();
    let bridge = std::process::Command::new("ip")
        .args(["link", "add", "irsa0", "type", "bridge"])
        .status()
        .unwrap();
    assert!(bridge.success(), "a bridge named irsa0 already exists");
    state
}

/// The playground as the README tells it: `up` (here twice: the second updates in place), a pod
/// of an annotated ServiceAccount reads its token, `down` leaves nothing behind, not even what a
/// killed node had left before `up`.
#[test]
fn the_readme_real_node_quickstart_works_as_written() {
    let _turn = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let killed = leave_a_killed_node_behind();
    let quickstart = Quickstart::new();
    let first = quickstart
        .run("scripts/dev-cluster.sh up")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.lines().last(),
        Some(
            format!(
                "export KUBECONFIG={}",
                quickstart.state().join("kubeconfig").display()
            )
            .as_str()
        ),
        "{first}"
    );
    // What the playground puts on PATH for users without the tools.
    for tool in ["kubectl", "helm", "irsa-webhook"] {
        let path = quickstart.state().join("bin").join(tool);
        let mut version = std::process::Command::new(&path);
        version.arg(if tool == "kubectl" {
            "version"
        } else {
            "--help"
        });
        if tool == "kubectl" {
            version.arg("--client");
        }
        support::run(version, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let block = readme_quickstart();
    let output = quickstart
        .run(&block)
        .unwrap_or_else(|e| panic!("{block}\n{e}"));
    // doctor ends all green on the playground: only skips, each with its reason.
    let summary = output
        .lines()
        .find(|l| l.contains(" ok, ") && l.ends_with(" skipped"))
        .unwrap_or_else(|| panic!("no doctor report: {output}"));
    assert!(
        summary.contains(" 0 warnings, 0 failed, "),
        "{summary}\n{output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("skip public.discovery")
                && l.contains("the API server's own private address")),
        "{output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("ok   audience.api-server")),
        "the playground's API server does not accept tokens meant for AWS: {output}"
    );
    assert!(
        output.contains("AWS_ROLE_ARN=arn:aws:iam::111122223333:role/app"),
        "{output}"
    );
    let token = output
        .lines()
        .find(|l| l.starts_with("eyJ"))
        .unwrap_or_else(|| panic!("no token printed: {output}"));
    let claims = claims(token);
    assert_eq!(
        claims["sub"], "system:serviceaccount:default:app",
        "{claims}"
    );
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "app");

    assert!(!quickstart.state().exists(), "down removes its state");
    assert!(!killed.exists(), "up takes down the node a killed run left");
    let bridge = std::process::Command::new("ip")
        .args(["link", "show", "irsa0"])
        .output()
        .unwrap();
    assert!(!bridge.status.success(), "down removes the node's bridge");
}
