//! Throughput, latency and memory of `irsa-webhook discovery` serving a real API server's
//! documents: `cargo bench --bench discovery_load` (or bench/discovery.sh, which installs wrk)
//! runs `wrk -t2 -c64 -d10s --latency` against both public paths over plain HTTP on loopback and
//! prints req/s, p99 and the server's RSS. Without `--bench` (as under `cargo test
//! --all-targets`) it only checks that both paths answer, so the harness stays tested.

#[allow(dead_code)] // a bench uses a part of the tests' support
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::{Cluster, ClusterOptions};

const PATHS: [&str; 2] = ["/openid/v1/jwks", "/.well-known/openid-configuration"];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let cluster = Cluster::start(ClusterOptions::default());
    let (port, metrics_port) = (support::free_port(), support::free_port());
    let server = Killed(
        Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
            .args(["discovery", "--issuer-url", &cluster.issuer, "--kubeconfig"])
            .arg(&cluster.kubeconfig)
            .args(["--bind-address", "127.0.0.1", "--log-level", "warn"])
            .args([
                "--port",
                &port.to_string(),
                "--metrics-port",
                &metrics_port.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    let started = Instant::now();
    while support::http_get(([127, 0, 0, 1], metrics_port).into(), "/readyz")
        .map(|r| r.0)
        .unwrap_or(0)
        != 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "discovery never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in PATHS {
        let (status, body) = support::http_get(([127, 0, 0, 1], port).into(), path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    if !full {
        println!("discovery smoke pass: both paths answer 200 (run with --bench for figures)");
        return;
    }
    println!(
        "irsa-webhook discovery, plain HTTP on loopback, wrk -t2 -c64 -d10s (co-located, 2 cores)"
    );
    for path in PATHS {
        let out = Command::new("wrk")
            .args(["-t2", "-c64", "-d10s", "--latency"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("wrk is installed (bench/discovery.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| "?".into())
        };
        let errors = text
            .lines()
            .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
        println!(
            "  {path:<36} {:>10} req/s  p50 {:>8}  p99 {:>8}{}",
            field("Requests/sec:"),
            field("50%"),
            field("99%"),
            errors
                .map(|e| format!("  ({})", e.trim()))
                .unwrap_or_default()
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    println!(
        "  RSS now {}  peak {}  (targets: >= 50000 req/s on the JWKS path, RSS <= 10 MB)",
        kb("VmRSS:"),
        kb("VmHWM:")
    );
}
