//! Pods created without pause while something happens to the webhook, and what became of every
//! one of them: injected, admitted without the injection (a lost call under `failurePolicy:
//! Ignore`), refused by a failed call (under `Fail`), or not accepted by the API server itself.
//!
//! Creates are server-side dry runs: they go through admission exactly like real creates, and
//! leave nothing for the node to run. Each failure policy has its own stream: `Ignore` pods go
//! through the chart's own webhook entry, `Fail` pods carry the chart's opt-out label (so that
//! entry skips them) and [`FAIL_LABEL`], which a second entry with `failurePolicy: Fail`
//! selects (see [`fail_entry`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// The label the `Fail` entry selects.
pub const FAIL_LABEL: &str = "irsa-chaos/policy";

/// Which webhook entry a stream of creates goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    Ignore,
    Fail,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Ignore => "Ignore",
            Policy::Fail => "Fail",
        }
    }
}

/// What became of one create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted with the token volume and `AWS_ROLE_ARN`.
    Injected,
    /// Admitted without them: the webhook call was lost under `Ignore`.
    NotInjected,
    /// Refused because the webhook call failed (under `Fail`); the API server's message.
    Refused(String),
    /// The API server itself did not take the request (down, restarting); its error.
    Unavailable(String),
}

impl Outcome {
    /// Whether this is a pod that lost its identity or a create refused because of us.
    pub fn is_loss(&self) -> bool {
        matches!(self, Outcome::NotInjected | Outcome::Refused(_))
    }
}

/// One create.
#[derive(Debug, Clone)]
pub struct Sample {
    pub policy: Policy,
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    pub outcome: Outcome,
}

/// The second webhook entry, appended to the chart's configuration `config` (a `kubectl get -o
/// json` of it): the chart's first entry with `failurePolicy: Fail`, for pods of `namespace`
/// labelled [`FAIL_LABEL`]. The webhook keeps its `caBundle` current with the first one's.
pub fn fail_entry(config: &Value, namespace: &str) -> Value {
    let mut entry = config["webhooks"][0].clone();
    entry["name"] = json!("chaos-fail.irsa-webhook.io");
    entry["failurePolicy"] = json!("Fail");
    entry["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
    entry["objectSelector"] = json!({"matchLabels": {FAIL_LABEL: "fail"}});
    entry
}

/// Creators running in the background, with phase marks.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Sample>>>,
    phases: Mutex<Vec<(String, Duration)>>,
}

impl Load {
    /// Starts `per_policy` creators for each of `policies` in `namespace` (whose ServiceAccount
    /// `service_account` carries a role), each sending `rate` creates a second, in phase
    /// `first_phase`.
    pub fn start(
        kubeconfig: &Path,
        namespace: &str,
        service_account: &str,
        policies: &[Policy],
        per_policy: usize,
        rate: f64,
        first_phase: &str,
    ) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &policy in policies {
            for _ in 0..per_policy {
                let (kubeconfig, namespace, service_account, stop) = (
                    kubeconfig.to_owned(),
                    namespace.to_owned(),
                    service_account.to_owned(),
                    stop.clone(),
                );
                threads.push(std::thread::spawn(move || {
                    super::cluster::block_on(create_until(
                        kubeconfig,
                        namespace,
                        service_account,
                        policy,
                        rate,
                        started,
                        stop,
                    ))
                }));
            }
        }
        Self {
            started,
            stop,
            threads,
            phases: Mutex::new(vec![(first_phase.to_owned(), Duration::ZERO)]),
        }
    }

    /// From now on, samples belong to phase `name`.
    pub fn phase(&self, name: &str) {
        self.phases
            .lock()
            .unwrap()
            .push((name.to_owned(), self.started.elapsed()));
        eprintln!("chaos: {name} ({:?})", self.started.elapsed());
    }

    /// Stops the creators and returns everything they saw.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let mut samples: Vec<Sample> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("a creator panicked"))
            .collect();
        samples.sort_by_key(|s| s.at);
        Report {
            samples,
            phases: self.phases.into_inner().unwrap(),
        }
    }
}

async fn create_until(
    kubeconfig: std::path::PathBuf,
    namespace: String,
    service_account: String,
    policy: Policy,
    rate: f64,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let client = super::cluster::client(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = chaos_pod(policy, &service_account);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let at = started.elapsed();
        let sent = Instant::now();
        let outcome = create_once(&pods, &pod).await;
        samples.push(Sample {
            policy,
            at,
            latency: sent.elapsed(),
            outcome,
        });
    }
    samples
}

/// A pod of `service_account` for the `policy` stream.
fn chaos_pod(policy: Policy, service_account: &str) -> Pod {
    let mut labels = json!({"app": "chaos"});
    if policy == Policy::Fail {
        labels[FAIL_LABEL] = json!("fail");
        labels["eks.amazonaws.com/skip-pod-identity-webhook"] = json!("true");
    }
    serde_json::from_value(json!({
        "metadata": {"generateName": "chaos-", "labels": labels},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "localhost/aws-cli:dev", "imagePullPolicy": "Never"}]
        }
    }))
    .unwrap()
}

/// One server-side dry-run create of `pod`, and what became of it.
async fn create_once(pods: &Api<Pod>, pod: &Pod) -> Outcome {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&params, pod).await {
        Ok(made) if injected(&made) => Outcome::Injected,
        Ok(_) => Outcome::NotInjected,
        Err(kube::Error::Api(status)) if status.message.contains("webhook") => {
            Outcome::Refused(status.message)
        }
        Err(err) => Outcome::Unavailable(err.to_string()),
    }
}

fn injected(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "aws-iam-token");
    let env = spec.containers[0]
        .env
        .iter()
        .flatten()
        .any(|e| e.name == "AWS_ROLE_ARN");
    volume && env
}

/// Every create of a run, with the phases it was divided into.
pub struct Report {
    pub samples: Vec<Sample>,
    phases: Vec<(String, Duration)>,
}

impl Report {
    /// The phase a create sent at `at` belongs to.
    pub fn phase_of(&self, at: Duration) -> &str {
        self.phases
            .iter()
            .rev()
            .find(|(_, start)| *start <= at)
            .map_or("", |(name, _)| name.as_str())
    }

    /// The samples of phase `name`.
    pub fn in_phase<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| self.phase_of(s.at) == name)
    }

    /// The losses of phase `name`, one line each.
    pub fn losses_in(&self, name: &str) -> Vec<String> {
        self.in_phase(name)
            .filter(|s| s.outcome.is_loss())
            .map(|s| format!("{} at {:?}: {:?}", s.policy.name(), s.at, s.outcome))
            .collect()
    }

    /// A table: per phase and policy, creates, injected, lost (not injected / refused), not
    /// taken by the API server, and the create latency p50 and p99.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:<7} {:>7} {:>8} {:>12} {:>8} {:>11} {:>9} {:>9}\n",
            "phase",
            "policy",
            "creates",
            "injected",
            "not injected",
            "refused",
            "unavailable",
            "p50 ms",
            "p99 ms"
        );
        for (name, _) in &self.phases {
            for policy in [Policy::Ignore, Policy::Fail] {
                let samples: Vec<&Sample> =
                    self.in_phase(name).filter(|s| s.policy == policy).collect();
                if samples.is_empty() {
                    continue;
                }
                let count =
                    |f: fn(&Outcome) -> bool| samples.iter().filter(|s| f(&s.outcome)).count();
                let mut latencies: Vec<Duration> = samples
                    .iter()
                    .filter(|s| !matches!(s.outcome, Outcome::Unavailable(_)))
                    .map(|s| s.latency)
                    .collect();
                latencies.sort();
                out.push_str(&format!(
                    "{:<28} {:<7} {:>7} {:>8} {:>12} {:>8} {:>11} {:>9.1} {:>9.1}\n",
                    name,
                    policy.name(),
                    samples.len(),
                    count(|o| *o == Outcome::Injected),
                    count(|o| *o == Outcome::NotInjected),
                    count(|o| matches!(o, Outcome::Refused(_))),
                    count(|o| matches!(o, Outcome::Unavailable(_))),
                    percentile(&latencies, 0.50),
                    percentile(&latencies, 0.99),
                ));
            }
        }
        out
    }
}

/// The `q` quantile of sorted `latencies`, in milliseconds (0 when empty).
fn percentile(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1000.0
}

/// What to run and against which release.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The release namespace.
    pub namespace: String,
    /// The webhook Deployment, which is also its MutatingWebhookConfiguration's name.
    pub webhook: String,
    /// The self-managed certificate Secret.
    pub secret: String,
    /// The discovery Deployment and Service, when the release runs one.
    pub discovery: Option<String>,
    /// Rolling restarts of the webhook.
    pub rollouts: usize,
    /// Creators per failure policy, and the creates per second of each.
    pub per_policy: usize,
    pub rate: f64,
    /// Rotate the self-managed certificate (within seconds only with a short
    /// `certificates.self.checkInterval`).
    pub rotate_certificate: bool,
    /// After the graceful faults: an API server restart, a SIGKILL and a network cut.
    pub ungraceful: bool,
}

/// Phases without any fault a client should notice.
pub const GRACEFUL: [&str; 5] = [
    "steady",
    "rolling restarts",
    "pod deleted",
    "certificate rotation",
    "old pods draining",
];
/// The phases of the API server restart.
pub const APISERVER: [&str; 2] = ["API server restart", "after API server restart"];
/// The phases of the ungraceful faults, each followed by a recovery phase.
pub const UNGRACEFUL: [&str; 4] = [
    "webhook SIGKILL",
    "after SIGKILL",
    "network cut",
    "after network cut",
];

/// What a run saw: every create, the relying party's failed JWKS fetches while the discovery
/// Deployment rolled (with how many it made), and what the webhook pods said as they drained.
pub struct Outcomes {
    pub report: Report,
    pub fetches: usize,
    pub fetch_failures: Vec<String>,
    pub drains: Vec<Drain>,
}

/// One webhook listener's drain, from its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub pod: String,
    /// Connections accepted after SIGTERM, and the last one's time after it.
    pub accepted: u64,
    pub last_accept_ms: Option<u64>,
    /// Requests answered after SIGTERM.
    pub answered: u64,
    /// Connections still open (idle) when the drain ended, dropped.
    pub dropped: u64,
}

impl Drain {
    /// A one-line summary of `drains`: how long connections kept coming after SIGTERM (what
    /// the shutdown delay must cover) and what the drains dropped.
    pub fn summary(drains: &[Drain]) -> String {
        let sum = |f: fn(&Drain) -> u64| drains.iter().map(f).sum::<u64>();
        format!(
            "{} webhook pods drained: {} connections accepted after SIGTERM (the last {} ms \
             after it), {} requests answered after SIGTERM, {} idle connections dropped when a \
             drain ended",
            drains.len(),
            sum(|d| d.accepted),
            drains
                .iter()
                .filter_map(|d| d.last_accept_ms)
                .max()
                .unwrap_or(0),
            sum(|d| d.answered),
            sum(|d| d.dropped)
        )
    }
}

/// Follows the logs of every webhook pod that appears, to read their drain lines.
struct LogWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Drain>>,
}

impl LogWatch {
    fn start(node: &super::node::Node, plan: &Plan) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kubectl = node.bin.join("kubectl");
        let (kubeconfig, namespace) = (node.kubeconfig.clone(), plan.namespace.clone());
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut followed: Vec<(String, std::process::Child)> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let list = std::process::Command::new(&kubectl)
                        .arg(format!("--kubeconfig={}", kubeconfig.display()))
                        .args(["get", "pods", "-n", &namespace, "-o", "json"])
                        .args(["-l", "app.kubernetes.io/component=webhook"])
                        .output()
                        .ok()
                        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                        .unwrap_or_default();
                    // Followed from when the container runs until it ends, its whole log.
                    let running = list["items"].as_array().into_iter().flatten().filter(|p| {
                        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
                    });
                    for pod in running {
                        let name = pod["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        if followed.iter().any(|(n, _)| *n == name) {
                            continue;
                        }
                        let child = std::process::Command::new(&kubectl)
                            .arg(format!("--kubeconfig={}", kubeconfig.display()))
                            .args(["logs", "-f", "-n", &namespace, &name])
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .expect("kubectl logs");
                        followed.push((name, child));
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                followed
                    .into_iter()
                    .filter_map(|(name, mut child)| {
                        let _ = child.kill();
                        let mut log = String::new();
                        use std::io::Read as _;
                        child.stdout.take()?.read_to_string(&mut log).ok()?;
                        let _ = child.wait();
                        drain_of(&name, &log)
                    })
                    .collect()
            }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<Drain> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the log watch panicked")
    }
}

/// The admission listener's drain line in a webhook pod's JSON log.
fn drain_of(pod: &str, log: &str) -> Option<Drain> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["address"].as_str().is_some_and(|a| a.contains(":8443"))
                && l.get("accepted").is_some()
        })
        .map(|l| Drain {
            pod: pod.to_owned(),
            accepted: l["accepted"].as_u64().unwrap_or(0),
            last_accept_ms: l["last_accept_ms"].as_u64(),
            answered: l["answered"].as_u64().unwrap_or(0),
            dropped: l["dropped"].as_u64().unwrap_or(0),
        })
}

const NAMESPACE: &str = "irsa-chaos";
const LIMIT: Duration = Duration::from_secs(180);

/// Runs `plan` against the release on `node` while pods are created without pause.
pub fn run(node: &super::node::Node, plan: &Plan) -> Outcomes {
    node.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: {NAMESPACE}\n  \
         annotations: {{eks.amazonaws.com/role-arn: 'arn:aws:iam::111122223333:role/chaos'}}\n"
    ));
    let config = node.json(&["get", "mutatingwebhookconfiguration", &plan.webhook]);
    let has_fail_entry = config["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["name"] == "chaos-fail.irsa-webhook.io");
    if !has_fail_entry {
        let patch =
            json!([{"op": "add", "path": "/webhooks/-", "value": fail_entry(&config, NAMESPACE)}]);
        node.kubectl(&[
            "patch",
            "mutatingwebhookconfiguration",
            &plan.webhook,
            "--type=json",
            "-p",
            &patch.to_string(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // Configurations take effect asynchronously: both streams must be injected first.
    for policy in [Policy::Ignore, Policy::Fail] {
        node.wait(
            &format!("the {} entry injecting", policy.name()),
            LIMIT,
            || {
                let outcome = super::cluster::block_on(async {
                    let client = super::cluster::client(&node.kubeconfig).await;
                    create_once(
                        &Api::namespaced(client, NAMESPACE),
                        &chaos_pod(policy, "app"),
                    )
                    .await
                });
                (outcome == Outcome::Injected).then_some(())
            },
        );
    }

    let logs = LogWatch::start(node, plan);
    let load = Load::start(
        &node.kubeconfig,
        NAMESPACE,
        "app",
        &[Policy::Ignore, Policy::Fail],
        plan.per_policy,
        plan.rate,
        GRACEFUL[0],
    );
    let replicas = ready_webhooks(node, plan, None).len();
    std::thread::sleep(Duration::from_secs(5));

    load.phase(GRACEFUL[1]);
    for _ in 0..plan.rollouts {
        roll(node, &plan.namespace, &plan.webhook);
    }

    load.phase(GRACEFUL[2]);
    let before = ready_webhooks(node, plan, Some(replicas));
    let victim = before[0]["metadata"]["name"].as_str().unwrap().to_owned();
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        &plan.namespace,
        &victim,
        "--wait=false",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    node.wait("a replacement for the deleted webhook pod", LIMIT, || {
        let ready = ready_webhooks_now(node, plan);
        (ready.len() == replicas
            && ready
                .iter()
                .all(|p| p["metadata"]["name"] != victim.as_str()))
        .then_some(())
    });

    if plan.rotate_certificate {
        load.phase(GRACEFUL[3]);
        rotate_certificate(node, plan, replicas);
    }

    load.phase(GRACEFUL[4]);
    node.wait("the old webhook pods gone", LIMIT, || {
        (webhook_pods(node, plan).len() == replicas).then_some(())
    });

    let (mut fetches, mut fetch_failures) = (0, Vec::new());
    if plan.ungraceful {
        load.phase(APISERVER[0]);
        node.restart_apiserver();
        load.phase(APISERVER[1]);
        std::thread::sleep(Duration::from_secs(10));

        if let Some(discovery) = &plan.discovery {
            load.phase("discovery rollout");
            (fetches, fetch_failures) = roll_discovery(node, plan, discovery);
        }

        load.phase(UNGRACEFUL[0]);
        let pod = busiest(ready_webhooks(node, plan, Some(replicas)));
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64();
        let container = pod["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("containerd://")
            .to_owned();
        node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &container])
            .unwrap_or_else(|e| panic!("{e}"));
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        node.wait(
            "the killed webhook container restarted and ready",
            LIMIT,
            || {
                let ready = ready_webhooks_now(node, plan);
                ready
                    .iter()
                    .any(|p| {
                        p["metadata"]["name"] == name.as_str()
                            && p["status"]["containerStatuses"][0]["restartCount"].as_u64()
                                > restarts
                    })
                    .then_some(())
            },
        );
        load.phase(UNGRACEFUL[1]);
        std::thread::sleep(Duration::from_secs(5));

        load.phase(UNGRACEFUL[2]);
        let pod = busiest(ready_webhooks(node, plan, Some(replicas)));
        let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
        {
            let _cut = Cut::new(&ip);
            std::thread::sleep(Duration::from_secs(20));
        }
        load.phase(UNGRACEFUL[3]);
        ready_webhooks(node, plan, Some(replicas));
        std::thread::sleep(Duration::from_secs(5));
    }
    let report = load.stop();
    Outcomes {
        report,
        fetches,
        fetch_failures,
        drains: logs.stop(),
    }
}

/// Of `pods`, the one the API server has the most connections to: it reuses kept-alive
/// connections and dials a new one only when it needs more, so a pod without one gets no
/// calls, and a fault there would prove nothing.
fn busiest(pods: Vec<Value>) -> Value {
    let mut command = std::process::Command::new("ss");
    command.args(["-Htn", "state", "established", "( dport = :8443 )"]);
    let sockets = super::run(command, None).unwrap_or_else(|e| panic!("{e}"));
    let connections = |pod: &Value| {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        sockets
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .any(|field| field == format!("{ip}:8443"))
            })
            .count()
    };
    let pod = pods
        .into_iter()
        .max_by_key(connections)
        .expect("a ready webhook pod");
    eprintln!(
        "chaos: {} has {} of the API server's connections",
        pod["metadata"]["name"],
        connections(&pod)
    );
    pod
}

/// A rolling restart of Deployment `name`, until its new pods are all available.
fn roll(node: &super::node::Node, namespace: &str, name: &str) {
    let deployment = format!("deployment/{name}");
    node.kubectl(&["rollout", "restart", "-n", namespace, &deployment])
        .unwrap_or_else(|e| panic!("{e}"));
    node.kubectl(&[
        "rollout",
        "status",
        "-n",
        namespace,
        &deployment,
        "--timeout=180s",
    ])
    .unwrap_or_else(|e| panic!("rollout of {name}: {e}"));
}

/// Every packet from this host to a pod dropped while it lives: the API server and the kubelet
/// cannot reach it, and its answers to the API server's watch never arrive.
struct Cut(String);

impl Cut {
    fn new(ip: &str) -> Self {
        iptables(&["-I", "OUTPUT", "-d", ip, "-j", "DROP"]);
        Self(ip.to_owned())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        iptables(&["-D", "OUTPUT", "-d", &self.0, "-j", "DROP"]);
    }
}

fn iptables(args: &[&str]) {
    let mut command = std::process::Command::new("iptables");
    command.args(args);
    super::run(command, None).unwrap_or_else(|e| panic!("{e}"));
}

/// The webhook pods of the release, terminating ones included.
fn webhook_pods(node: &super::node::Node, plan: &Plan) -> Vec<Value> {
    let list = node.json(&[
        "get",
        "pods",
        "-n",
        &plan.namespace,
        "-l",
        "app.kubernetes.io/component=webhook",
    ]);
    list["items"].as_array().unwrap().clone()
}

/// The webhook pods that are Ready and not terminating, now.
fn ready_webhooks_now(node: &super::node::Node, plan: &Plan) -> Vec<Value> {
    webhook_pods(node, plan)
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .collect()
}

/// The ready webhook pods once there are `count` of them (at least one when `None`).
fn ready_webhooks(node: &super::node::Node, plan: &Plan, count: Option<usize>) -> Vec<Value> {
    node.wait("ready webhook pods", LIMIT, || {
        let ready = ready_webhooks_now(node, plan);
        let enough = count.map_or(!ready.is_empty(), |n| ready.len() == n);
        enough.then_some(ready)
    })
}

/// A new CA and serving certificate in the Secret (the previous CA kept), as a renewal makes
/// them; returns once the `caBundle` trusts both and every ready replica serves the new one.
fn rotate_certificate(node: &super::node::Node, plan: &Plan, replicas: usize) {
    let secret = node.json(&["get", "secret", "-n", &plan.namespace, &plan.secret]);
    let decode = |key: &str| {
        use base64::Engine as _;
        let data = secret["data"][key].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    };
    let old_ca = decode("ca.crt");
    let deployment = node.json(&["get", "deployment", "-n", &plan.namespace, &plan.webhook]);
    let dns: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "IRSA_CERT_DNS")
        .and_then(|e| e["value"].as_str())
        .expect("the self-managed certificate's DNS names")
        .split(',')
        .map(str::to_owned)
        .collect();
    let next = irsa_webhook::certs::generate(&dns, &[], 365).unwrap();
    let patch = json!({"stringData": {
        "ca.crt": next.ca_cert, "ca.key": next.ca_key, "tls.crt": next.tls_cert,
        "tls.key": next.tls_key, "ca-previous.crt": old_ca,
    }});
    node.kubectl(&[
        "patch",
        "secret",
        "-n",
        &plan.namespace,
        &plan.secret,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    node.wait("every replica serving the new certificate", LIMIT, || {
        let pods = ready_webhooks_now(node, plan);
        let served = pods.iter().filter(|p| {
            let addr = format!("{}:8443", p["status"]["podIP"].as_str().unwrap_or_default());
            let Ok(addr) = addr.parse() else {
                return false;
            };
            super::cluster::block_on(super::tls_connect_to(
                addr,
                &dns[0],
                super::roots(&[&next.ca_cert]),
                &[b"http/1.1"],
                rustls::ALL_VERSIONS,
            ))
            .is_ok()
        });
        (served.count() == replicas).then_some(())
    });
    let config = node.json(&["get", "mutatingwebhookconfiguration", &plan.webhook]);
    for webhook in config["webhooks"].as_array().unwrap() {
        use base64::Engine as _;
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(webhook["clientConfig"]["caBundle"].as_str().unwrap())
            .unwrap();
        let bundle = String::from_utf8(bundle).unwrap();
        assert!(
            bundle.contains(next.ca_cert.trim()) && bundle.contains(old_ca.trim()),
            "{}: the caBundle trusts the new and the old CA",
            webhook["name"]
        );
    }
}

/// Rolls the discovery Deployment while two relying parties fetch the JWKS through its Service
/// every 100 ms, one on a kept-alive connection (as a proxy in front does), one on a new
/// connection each time (as STS does); returns the fetches and the failed ones.
fn roll_discovery(node: &super::node::Node, plan: &Plan, discovery: &str) -> (usize, Vec<String>) {
    let service = node.json(&["get", "service", "-n", &plan.namespace, discovery]);
    let addr: std::net::SocketAddr = format!(
        "{}:{}",
        service["spec"]["clusterIP"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"]
    )
    .parse()
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let parties: Vec<_> = [true, false]
        .into_iter()
        .map(|keep_alive| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                super::cluster::block_on(relying_party(addr, keep_alive, stop))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    roll(node, &plan.namespace, discovery);
    let deployment = format!("deployment/{discovery}");
    let replicas = node.json(&["get", "-n", &plan.namespace, &deployment])["spec"]["replicas"]
        .as_u64()
        .unwrap() as usize;
    node.wait("the old discovery pods gone", LIMIT, || {
        let pods = node.json(&[
            "get",
            "pods",
            "-n",
            &plan.namespace,
            "-l",
            "app.kubernetes.io/component=discovery",
        ]);
        (pods["items"].as_array().unwrap().len() == replicas).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    parties.into_iter().map(|p| p.join().unwrap()).fold(
        (0, Vec::new()),
        |(n, mut failures), (count, failed)| {
            failures.extend(failed);
            (n + count, failures)
        },
    )
}

async fn relying_party(
    addr: std::net::SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let (mut fetches, mut failures) = (0, Vec::new());
    let mut conn: Option<super::KeptAlive> = None;
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        fetches += 1;
        let result = if keep_alive {
            if conn.as_ref().is_none_or(super::KeptAlive::is_closed) {
                conn = super::KeptAlive::plain(addr).await.ok();
            }
            match conn.as_mut() {
                None => Err("cannot connect".to_owned()),
                Some(c) => match c.get("/openid/v1/jwks").await {
                    Ok((status, headers, _)) => {
                        // As a pooled client does: never reuse a connection the server closes.
                        if headers.get("connection").is_some_and(|v| v == "close") {
                            conn = None;
                        }
                        Ok(status)
                    }
                    Err(e) => Err(e.to_string()),
                },
            }
        } else {
            tokio::task::spawn_blocking(move || super::http_get(addr, "/openid/v1/jwks"))
                .await
                .unwrap()
                .map(|(status, _)| status)
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(200) => {}
            other => {
                conn = None;
                let kind = if keep_alive {
                    "kept-alive"
                } else {
                    "new connection"
                };
                failures.push(format!(
                    "{kind} fetch at {:?}: {other:?}",
                    started.elapsed()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (fetches, failures)
}
