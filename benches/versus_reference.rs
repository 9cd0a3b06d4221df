//! Side by side with the reference webhook (`aws/amazon-eks-pod-identity-webhook`, built from
//! its Go module by `scripts/install-tools.sh`), both against one real kube-apiserver.
//!
//! `cargo bench --bench versus_reference` (with `--profile dist` for the image's build):
//! 1. creates 10 000 ServiceAccounts (`IRSA_BENCH_SAS`; one in two annotated with a role) in 100
//!    namespaces, plus the fixture's `team-042/checkout-api`;
//! 2. per round (`IRSA_BENCH_ROUNDS`, 3), for each webhook, alternating which goes first: starts
//!    it, saturates it with `h2load -c16 -m10` over TLS and HTTP/2 (`IRSA_BENCH_REQUESTS`,
//!    100 000, after a tenth as many to warm up), measures the server's CPU per admission from
//!    `/proc`, then one request at a time (`h2load -c1 -m1`, a tenth as many) for p50/p99, then
//!    its RSS;
//! 3. grows the ServiceAccounts to 100 000 (`IRSA_BENCH_READY_SAS`) and, per round and webhook,
//!    times from spawn to ready (ours: `/readyz`; the reference: its ServiceAccount informer's
//!    "Caches populated") and to the first answer that carries the fixture's patch.
//!
//! `IRSA_BENCH_OURS=PATH` measures another build of ours, e.g. the image's
//! (`cargo build --profile dist`, then `IRSA_BENCH_OURS=$CARGO_TARGET_DIR/dist/irsa-webhook`).
//!
//! Every h2load run must negotiate h2 and get only 2xx answers, and both webhooks' answers must
//! carry a patch, before anything is measured. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a short pass with 200 and 400 ServiceAccounts so the
//! harness itself stays tested.

mod scale;
#[allow(dead_code)] // a bench uses a part of the tests' support
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::cluster::{Cluster, ClusterOptions};
use support::{KeptAlive, free_port, http_get, roots, write_certs};

const REVIEW: &str = "bench/fixtures/admission-review.json";
const LIMIT: Duration = Duration::from_secs(180);

/// What the bench runs with: full under `--bench`, a smoke pass otherwise.
struct Plan {
    sas: usize,
    ready_sas: usize,
    rounds: usize,
    requests: usize,
}

impl Plan {
    fn from_env(full: bool) -> Self {
        let number = |var: &str, full_value: usize, smoke: usize| {
            std::env::var(var)
                .ok()
                .map(|n| {
                    n.parse()
                        .unwrap_or_else(|_| panic!("{var} must be a number"))
                })
                .unwrap_or(if full { full_value } else { smoke })
        };
        let plan = Self {
            sas: number("IRSA_BENCH_SAS", 10_000, 200),
            ready_sas: number("IRSA_BENCH_READY_SAS", 100_000, 400),
            rounds: number("IRSA_BENCH_ROUNDS", 3, 1),
            requests: number("IRSA_BENCH_REQUESTS", 100_000, 2_000),
        };
        assert!(
            plan.ready_sas >= plan.sas,
            "IRSA_BENCH_READY_SAS < IRSA_BENCH_SAS"
        );
        assert!(
            plan.rounds > 0 && plan.requests >= 100,
            "too few rounds or requests"
        );
        plan
    }
}

/// The two webhooks compared.
#[derive(Clone, Copy, PartialEq)]
enum Webhook {
    Ours,
    Reference,
}

impl Webhook {
    fn name(self) -> &'static str {
        match self {
            Webhook::Ours => "irsa-webhook",
            Webhook::Reference => "reference",
        }
    }
}

/// A started webhook, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// When it was ready and the CPU it had used by then (only when started timed).
    ready: mpsc::Receiver<(Instant, Cpu)>,
}

/// One timed start.
struct Ready {
    ready: f64,
    cpu: f64,
    apiserver: f64,
    patched: f64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    cluster: Cluster,
    certs: tempfile::TempDir,
    ca_pem: String,
    review: Vec<u8>,
    ours: PathBuf,
    reference: PathBuf,
    h2load: PathBuf,
}

impl Bench {
    /// Starts a webhook; with `timed`, a thread notes when it is ready and its CPU by then
    /// (ours: `/readyz` polled every millisecond; the reference: its informer's "Caches
    /// populated" line, which it writes at -v=2).
    fn start(&self, webhook: Webhook, timed: bool) -> Running {
        let (port, metrics) = (free_port(), free_port());
        let cert = self.certs.path().join("tls.crt");
        let key = self.certs.path().join("tls.key");
        let mut command = match webhook {
            Webhook::Ours => {
                let mut c = Command::new(&self.ours);
                c.arg("serve")
                    .args(["--bind-address", "127.0.0.1", "--log-level", "warn"])
                    .arg("--kubeconfig")
                    .arg(&self.cluster.kubeconfig);
                c
            }
            Webhook::Reference => {
                // The reference listens on every interface; only loopback talks to it here.
                // Under load it runs at its default verbosity, where it still logs a line per
                // admission ("Adding jitter to default token expiration").
                let mut c = Command::new(&self.reference);
                c.args(["--in-cluster=false", "--logtostderr=true"])
                    .arg(if timed { "-v=2" } else { "-v=0" })
                    .arg("--kubeconfig")
                    .arg(&self.cluster.kubeconfig);
                c
            }
        };
        command
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--port", &port.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", webhook.name()));
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (tx, ready) = mpsc::channel();
        let reference = webhook == Webhook::Reference;
        // Drains the log (its pipe must never fill).
        let log_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if timed
                    && reference
                    && line.contains("Caches populated")
                    && line.contains("ServiceAccount")
                {
                    let _ = log_tx.send((Instant::now(), cpu_seconds(pid)));
                }
            }
        });
        if timed && !reference {
            let metrics: SocketAddr = ([127, 0, 0, 1], metrics).into();
            std::thread::spawn(move || {
                let started = Instant::now();
                while started.elapsed() < LIMIT {
                    if http_get(metrics, "/readyz").is_ok_and(|(s, _)| s == 200) {
                        let _ = tx.send((Instant::now(), cpu_seconds(pid)));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        Running {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            ready,
        }
    }

    /// Polls the webhook with the fixture every `every` until an answer carries a patch; when
    /// that was.
    fn first_patch(&self, addr: SocketAddr, started: Instant, every: Duration) -> Instant {
        support::cluster::block_on(async {
            let mut connection = loop {
                match KeptAlive::open(addr, roots(&[&self.ca_pem]), true).await {
                    Ok(c) => break c,
                    Err(_) => {
                        assert!(started.elapsed() < LIMIT, "not listening in {LIMIT:?}");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            };
            loop {
                let (status, _, body) = connection
                    .post("/mutate", self.review.clone())
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if answer["response"]["patch"].is_string() {
                    break Instant::now();
                }
                assert!(started.elapsed() < LIMIT, "no patched answer in {LIMIT:?}");
                tokio::time::sleep(every).await;
            }
        })
    }

    /// A timed start: seconds to ready and the CPU seconds it and the API server had spent by
    /// then. Nothing else talks to it meanwhile.
    fn ready(&self, webhook: Webhook) -> Ready {
        let apiserver = self.apiserver_pid();
        let before = cpu_seconds(apiserver);
        let started = Instant::now();
        let running = self.start(webhook, true);
        let (ready, cpu) = running
            .ready
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("{} not ready in {LIMIT:?}", webhook.name()));
        let apiserver = cpu_seconds(apiserver) - before;
        drop(running);
        // A second start for the first patched answer, polled every 10 ms: polling faster
        // would take CPU from the start-up it measures.
        let started_again = Instant::now();
        let running = self.start(webhook, false);
        let patched = self.first_patch(running.addr, started_again, Duration::from_millis(10));
        Ready {
            ready: (ready - started).as_secs_f64(),
            cpu: cpu.user + cpu.system,
            apiserver: apiserver.user + apiserver.system,
            patched: (patched - started_again).as_secs_f64(),
        }
    }

    /// The control plane's kube-apiserver (its command line names the cluster's directory).
    fn apiserver_pid(&self) -> u32 {
        let dir = self.cluster.dir.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.split('\0')
                        .next()
                        .is_some_and(|p| p.ends_with("/kube-apiserver"))
                        && c.contains(&dir)
                })
            })
            .expect("no kube-apiserver process for the bench's cluster")
    }

    /// Saturation and one-at-a-time runs against a started webhook.
    fn load(&self, webhook: Webhook, requests: usize) -> Load {
        let started = Instant::now();
        let running = self.start(webhook, false);
        self.first_patch(running.addr, started, Duration::from_millis(2));
        let work = tempfile::tempdir().unwrap();
        let url = format!("https://127.0.0.1:{}/mutate", running.addr.port());
        self.h2load(&url, work.path(), &["-c16", "-m10"], requests / 10);
        let before = (cpu_seconds(running.child.id()), machine());
        let saturated = self.h2load(&url, work.path(), &["-c16", "-m10"], requests);
        let cpu = cpu_seconds(running.child.id()) - before.0;
        let machine = machine() - before.1;
        let log = work.path().join("single.log");
        let single = self.h2load(
            &url,
            work.path(),
            &["-c1", "-m1", "--log-file", log.to_str().unwrap()],
            requests / 10,
        );
        let mut latencies = single_latencies(&log);
        latencies.sort_unstable();
        assert_eq!(
            latencies.len(),
            requests / 10,
            "h2load logged every request"
        );
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        Load {
            rps: saturated,
            cpu_us: (cpu.user + cpu.system) * 1e6 / requests as f64,
            system_us: cpu.system * 1e6 / requests as f64,
            steal_pct: 100.0 * machine.steal / machine.total,
            others_pct: 100.0 * (machine.busy - cpu.user - cpu.system) / machine.total,
            single_rps: single,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            rss_mib: scale::status_kib(running.child.id(), "VmRSS") as f64 / 1024.0,
        }
    }

    /// One h2load run POSTing the fixture; its requests per second. Every request must succeed
    /// over h2 with a 2xx answer.
    fn h2load(&self, url: &str, work: &Path, args: &[&str], requests: usize) -> f64 {
        let output = Command::new(&self.h2load)
            .arg("-d")
            .arg(self.certs.path().join("review.json"))
            .args(["-H", "content-type: application/json"])
            .args(["-n", &requests.to_string()])
            .args(args)
            .arg(url)
            .current_dir(work)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run h2load");
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "h2load failed:\n{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(out.contains("Application protocol: h2"), "no h2:\n{out}");
        assert!(
            out.contains(&format!("requests: {requests} total, {requests} started, {requests} done, {requests} succeeded"))
                && out.contains(&format!("status codes: {requests} 2xx")),
            "not every request succeeded with 2xx:\n{out}"
        );
        out.lines()
            .find_map(|l| l.strip_prefix("finished in "))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|l| l.strip_suffix(" req/s"))
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("no req/s in h2load's output:\n{out}"))
    }
}

/// One webhook's figures from one load run.
struct Load {
    rps: f64,
    cpu_us: f64,
    /// Of which in the kernel.
    system_us: f64,
    /// Share of the machine's CPU time stolen by the hypervisor during the saturation run.
    steal_pct: f64,
    /// Share of the machine's CPU time busy with anything but the server (h2load included).
    others_pct: f64,
    single_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mib: f64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = Plan::from_env(full);
    let tools = support::installed(
        "IRSA_TOOLS_DIR",
        "scripts/install-tools.sh",
        "Go and the Go module proxy build the reference webhook",
    );
    let ours = std::env::var_os("IRSA_BENCH_OURS").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_irsa-webhook")),
        PathBuf::from,
    );
    assert!(ours.is_file(), "no irsa-webhook at {}", ours.display());
    println!("irsa-webhook: {}", ours.display());
    let reference = tools.join("amazon-eks-pod-identity-webhook");
    assert!(
        reference.is_file(),
        "no reference webhook in {}",
        tools.display()
    );
    let h2load = which("h2load")
        .expect("h2load not found on PATH: apt-get install nghttp2-client (scripts/test.sh does)");
    let review = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(REVIEW)).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca_pem = write_certs(certs.path()).ca_cert;
    let cluster = Cluster::start(ClusterOptions::default());
    let bench = Bench {
        cluster,
        certs,
        ca_pem,
        review,
        ours,
        reference,
        h2load,
    };
    std::fs::write(bench.certs.path().join("review.json"), &bench.review).unwrap();

    let created = Instant::now();
    support::cluster::block_on(create(&bench.cluster, 0, plan.sas, true));
    println!(
        "created {} ServiceAccounts in {:.1} s",
        plan.sas + 1,
        created.elapsed().as_secs_f64()
    );
    let mut loads: [Vec<Load>; 2] = Default::default();
    for round in 0..plan.rounds {
        for webhook in order(round) {
            let load = bench.load(webhook, plan.requests);
            println!(
                "round {} {:>12}: {:>7.0} req/s, {:>6.1} µs CPU per admission ({:.1} in the kernel; \
                 machine: {:.0} % others, h2load included, {:.1} % stolen); one at a time {:.0} req/s, \
                 p50 {:.3} ms, p99 {:.3} ms; RSS {:.1} MiB",
                round + 1,
                webhook.name(),
                load.rps,
                load.cpu_us,
                load.system_us,
                load.others_pct,
                load.steal_pct,
                load.single_rps,
                load.p50_ms,
                load.p99_ms,
                load.rss_mib
            );
            loads[webhook as usize].push(load);
        }
    }

    let created = Instant::now();
    support::cluster::block_on(create(&bench.cluster, plan.sas, plan.ready_sas, false));
    println!(
        "{} ServiceAccounts in all ({:.1} s more)",
        plan.ready_sas + 1,
        created.elapsed().as_secs_f64()
    );
    let mut readies: [Vec<Ready>; 2] = Default::default();
    for round in 0..plan.rounds {
        for webhook in order(round) {
            let ready = bench.ready(webhook);
            println!(
                "round {} {:>12}: ready after {:.3} s (by then {:.2} s of its CPU, {:.2} s of the API server's); first patched answer after {:.3} s",
                round + 1,
                webhook.name(),
                ready.ready,
                ready.cpu,
                ready.apiserver,
                ready.patched
            );
            readies[webhook as usize].push(ready);
        }
    }

    let [ours, theirs] = &loads;
    println!(
        "\n| {} ServiceAccounts, {} requests | irsa-webhook | reference | ours / reference |",
        plan.sas + 1,
        plan.requests
    );
    println!("|---|---|---|---|");
    let row = |what: &str, f: &dyn Fn(&Load) -> f64, digits: usize| {
        let (o, t): (Vec<f64>, Vec<f64>) =
            (ours.iter().map(f).collect(), theirs.iter().map(f).collect());
        summary(what, &o, &t, digits);
    };
    row("saturated req/s (`-c16 -m10`)", &|l| l.rps, 0);
    row("server CPU per admission, µs", &|l| l.cpu_us, 1);
    row("of which in the kernel, µs", &|l| l.system_us, 1);
    row("one at a time, req/s (`-c1 -m1`)", &|l| l.single_rps, 0);
    row("one at a time, p50 ms", &|l| l.p50_ms, 3);
    row("one at a time, p99 ms", &|l| l.p99_ms, 3);
    row("RSS after load, MiB", &|l| l.rss_mib, 1);
    let [ours, theirs] = &readies;
    let n = plan.ready_sas + 1;
    let row = |what: &str, f: &dyn Fn(&Ready) -> f64| {
        let (o, t): (Vec<f64>, Vec<f64>) =
            (ours.iter().map(f).collect(), theirs.iter().map(f).collect());
        summary(what, &o, &t, 3);
    };
    row(&format!("ready with {n} ServiceAccounts, s"), &|r| r.ready);
    row("its CPU by then, s", &|r| r.cpu);
    row("the API server's CPU by then, s", &|r| r.apiserver);
    row(&format!("first patched answer with {n}, s"), &|r| r.patched);
}

/// Which webhook goes first in a round: they alternate, so neither always meets a warmer machine.
fn order(round: usize) -> [Webhook; 2] {
    if round.is_multiple_of(2) {
        [Webhook::Ours, Webhook::Reference]
    } else {
        [Webhook::Reference, Webhook::Ours]
    }
}

/// A table row: each side's range over the rounds and the range of the per-round ratio.
fn summary(what: &str, ours: &[f64], theirs: &[f64], digits: usize) {
    let range = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if (max - min).abs() < f64::EPSILON {
            format!("{min:.digits$}")
        } else {
            format!("{min:.digits$}–{max:.digits$}")
        }
    };
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(o, t)| o / t).collect();
    let ratio = {
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if (max - min).abs() < 0.0005 {
            format!("{min:.3}")
        } else {
            format!("{min:.3}–{max:.3}")
        }
    };
    println!("| {what} | {} | {} | {ratio} |", range(ours), range(theirs));
}

/// Creates ServiceAccounts `from..to` (and, with `first`, the namespaces and the fixture's
/// `team-042/checkout-api`).
async fn create(cluster: &Cluster, from: usize, to: usize, first: bool) {
    let client = cluster.client().await;
    if first {
        scale::create_namespaces(&client, &["team-042"]).await;
        let sa = json!({"metadata": {"name": "checkout-api", "annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/checkout-api",
        }}});
        Api::<ServiceAccount>::namespaced(client.clone(), "team-042")
            .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
            .await
            .unwrap();
    }
    scale::create_service_accounts(&client, from, to).await;
}

/// User and system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // /proc counts in USER_HZ, 100 per second in Linux's ABI whatever the kernel's tick.
    let seconds = |i: usize| fields[i].parse::<u64>().unwrap() as f64 / 100.0;
    Cpu {
        user: seconds(11),
        system: seconds(12),
    }
}

#[derive(Clone, Copy)]
struct Cpu {
    user: f64,
    system: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, before: Cpu) -> Cpu {
        Cpu {
            user: self.user - before.user,
            system: self.system - before.system,
        }
    }
}

/// The machine's CPU seconds (all CPUs) from `/proc/stat`.
#[derive(Clone, Copy)]
struct Machine {
    total: f64,
    busy: f64,
    steal: f64,
}

impl std::ops::Sub for Machine {
    type Output = Machine;
    fn sub(self, before: Machine) -> Machine {
        Machine {
            total: self.total - before.total,
            busy: self.busy - before.busy,
            steal: self.steal - before.steal,
        }
    }
}

fn machine() -> Machine {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice (in USER_HZ)
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .expect("no cpu line in /proc/stat")
        .split_whitespace()
        .take(8)
        .map(|t| t.parse::<f64>().unwrap() / 100.0)
        .collect();
    let idle = ticks[3] + ticks[4];
    let steal = ticks[7];
    let total: f64 = ticks.iter().sum();
    Machine {
        total,
        busy: total - idle - steal,
        steal,
    }
}

/// Microseconds from start to end of each request in an h2load `--log-file`.
fn single_latencies(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            l.split('\t')
                .nth(2)
                .and_then(|v| v.trim().parse().ok())
                .expect("h2load log row")
        })
        .collect()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
