//! How much the webhook adds to pod creation through a real kube-apiserver.
//!
//! `cargo bench --bench admission_overhead` (or bench/admission-overhead.sh) creates pods one at a
//! time, alternating between a namespace our webhook is registered for and one it is not, and
//! prints p50/p99 create latency of each and the difference. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a 5-pod smoke pass so the harness itself stays tested.

#[allow(dead_code)] // a bench uses a part of the tests' support
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;
use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{ARN, Env, Registration, create_pod, has_token_volume, pod};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let pods: usize = std::env::var("IRSA_BENCH_PODS")
        .ok()
        .map(|n| n.parse().expect("IRSA_BENCH_PODS must be a number"))
        .unwrap_or(if full { 500 } else { 5 });
    let cluster = Cluster::start(ClusterOptions::default());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&cluster, pods, full));
}

async fn run(cluster: &Cluster, pods: usize, full: bool) {
    let registration = Registration {
        args: vec!["--log-level".into(), "warn".into()],
        ..Default::default()
    };
    let env = Env::new(cluster, "overhead", registration).await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    let plain_ns = format!("{}-plain", env.ns);
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": plain_ns}})).unwrap(),
        )
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &plain_ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ARN}}})).unwrap(),
    )
    .await
    .unwrap();
    let plain = |name: String| {
        let client = env.client.clone();
        let ns = plain_ns.clone();
        async move {
            let created = create_pod(&client, &ns, pod(&name, "app", &[]), false).await;
            assert_eq!(created.status, 201, "{created:?}");
            created
        }
    };

    // Warm-up: connections, caches, the API server's webhook client.
    for i in 0..20.min(pods) {
        env.create(pod(&format!("warm-{i}"), "app", &[])).await;
        plain(format!("warm-{i}")).await;
    }
    let (mut with, mut without) = (Vec::with_capacity(pods), Vec::with_capacity(pods));
    for i in 0..pods {
        let name = format!("pod-{i}");
        let started = Instant::now();
        let created = env.create(pod(&name, "app", &[])).await;
        with.push(started.elapsed());
        assert!(
            has_token_volume(&created.pod),
            "the webhook mutated the pod"
        );
        let started = Instant::now();
        let created = plain(name).await;
        without.push(started.elapsed());
        assert!(!has_token_volume(&created.pod));
    }
    let (p50_with, p99_with) = percentiles(&mut with);
    let (p50_without, p99_without) = percentiles(&mut without);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "pod creates through kube-apiserver, {pods} each, sequential{}",
        if full {
            ""
        } else {
            " (smoke pass; run with --bench)"
        }
    );
    println!(
        "  without webhook: p50 {:.3} ms  p99 {:.3} ms",
        ms(p50_without),
        ms(p99_without)
    );
    println!(
        "  with webhook:    p50 {:.3} ms  p99 {:.3} ms",
        ms(p50_with),
        ms(p99_with)
    );
    println!(
        "  added by the webhook: p50 {:+.3} ms  p99 {:+.3} ms  (target: <= 1 ms at p50)",
        ms(p50_with) - ms(p50_without),
        ms(p99_with) - ms(p99_without)
    );
    let handled = env
        .webhook
        .metric("irsa_webhook_admission_duration_seconds_sum")
        / env
            .webhook
            .metric("irsa_webhook_admission_duration_seconds_count");
    println!(
        "  the webhook's own handling (its admission_duration metric): mean {:.3} ms per review",
        handled * 1e3
    );
    env.cleanup().await;
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.99))
}
