//! How fast `serve` is ready, and how much memory its first list takes, with many
//! ServiceAccounts in a real kube-apiserver.
//!
//! `cargo bench --bench startup_at_scale` creates 100 000 ServiceAccounts (`IRSA_BENCH_SAS` to
//! change; one in two annotated with a role) in 100 namespaces, then starts `serve --kubeconfig`
//! three times and prints, per start, the milliseconds from spawn to the first `/readyz` 200 and
//! the peak RSS (VmHWM) at that moment. Without `--bench` (as under `cargo test --all-targets`)
//! it runs a 200-ServiceAccount smoke pass so the harness itself stays tested.

mod scale;
#[allow(dead_code)] // a bench uses a part of the tests' support
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::{Cluster, ClusterOptions};
use support::{free_port, http_get, write_certs};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("IRSA_BENCH_SAS")
        .ok()
        .map(|n| n.parse().expect("IRSA_BENCH_SAS must be a number"))
        .unwrap_or(if full { 100_000 } else { 200 });
    let cluster = Cluster::start(ClusterOptions::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(create(&cluster, count));
    println!(
        "created {count} ServiceAccounts in {} namespaces in {:.1} s",
        scale::NAMESPACES,
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    for run in 1..=3 {
        let (ready, peak) = start_serve(&cluster, dir.path());
        println!(
            "start {run}: ready after {:.0} ms, peak RSS {:.1} MiB",
            ready.as_secs_f64() * 1000.0,
            peak as f64 / 1024.0
        );
    }
}

async fn create(cluster: &Cluster, count: usize) {
    let client = cluster.client().await;
    scale::create_namespaces(&client, &[]).await;
    scale::create_service_accounts(&client, 0, count).await;
}

/// Starts `serve` against the cluster; the time to the first ready answer and VmHWM in KiB.
fn start_serve(cluster: &Cluster, certs: &std::path::Path) -> (Duration, u64) {
    let metrics = free_port();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
        ])
        .args([
            "--metrics-port",
            &metrics.to_string(),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = loop {
        if http_get(([127, 0, 0, 1], metrics).into(), "/readyz").is_ok_and(|(s, _)| s == 200) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let peak = scale::status_kib(child.id(), "VmHWM");
    let _ = child.kill();
    let _ = child.wait();
    (ready, peak)
}
