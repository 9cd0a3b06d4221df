//! End-to-end faults: the webhook down, the API server restarted, a watch that cannot resume,
//! the webhook restarted.
//! These disturb the whole control plane, so they run one after another in one test, on a
//! control plane of their own.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{ARN, Env, Registration, has_token_volume, pod};

#[tokio::test]
async fn faults() {
    if support::cluster::skipped_on_own_cluster(
        "e2e_faults",
        "it stops and restarts the API server, so it runs only on the control plane the tests start",
    ) {
        return;
    }
    let cluster = Cluster::start(ClusterOptions::default());
    webhook_down_follows_the_failure_policy(&cluster).await;
    api_server_restart_is_survived(&cluster).await;
    a_watch_that_cannot_resume_relists(&cluster).await;
    webhook_restart_resumes_mutating(&cluster).await;
}

async fn webhook_down_follows_the_failure_policy(cluster: &Cluster) {
    let mut env = Env::new(cluster, "down", Registration::default()).await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    env.webhook.stop();

    // failurePolicy Ignore: created, unmutated.
    let created = env.create(pod("ignored", "app", &[])).await;
    assert!(!has_token_volume(&created.pod));

    // failurePolicy Fail: refused with the API server's own message.
    env.unregister(&env.config_name).await;
    env.register(&env.config_name, "Fail").await;
    let started = Instant::now();
    let refused = loop {
        let answer = env.create_pod(pod("refused", "app", &[]), true).await;
        if answer.status != 201 {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Fail policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.status, 500, "{refused:?}");
    let message = refused.pod["message"].as_str().unwrap();
    assert!(message.contains("failed calling webhook"), "{message}");
    env.cleanup().await;
}

async fn api_server_restart_is_survived(cluster: &Cluster) {
    let env = Env::new(cluster, "restart", Registration::default()).await;
    env.service_account("app", &[]).await;
    let api_lookups = "irsa_webhook_serviceaccount_lookups_total{result=\"api_found\"}";
    let before = env.webhook.metric(api_lookups);

    cluster.stop_apiserver();
    // The webhook keeps answering ready from its index while the API server is away.
    for _ in 0..10 {
        assert_eq!(
            support::http_get(env.webhook.health, "/readyz").unwrap().0,
            200
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.start_apiserver();

    // Annotate the ServiceAccount while the webhook's watch is still reconnecting.
    let client = cluster.client().await;
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client, &env.ns);
    let patch = json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": ARN}}});
    sas.patch(
        "app",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();

    let env = Env {
        client: cluster.client().await,
        ..env
    };
    let started = Instant::now();
    loop {
        let created = env.create_pod(pod("after-restart", "app", &[]), true).await;
        if created.status == 201 && has_token_volume(&created.pod) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "annotation never honoured: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "annotation honoured {:?} after the API server came back",
        started.elapsed()
    );
    // Through the resumed watch, not through a fallback GET (the index knew the ServiceAccount).
    assert_eq!(env.webhook.metric(api_lookups), before);
    assert_eq!(
        support::http_get(env.webhook.health, "/readyz").unwrap().0,
        200
    );
    env.cleanup().await;
}

/// A ServiceAccount deleted behind the API server's back while it was down, etcd compacted past
/// the webhook's watch: the watch cannot resume (410 Gone), so the index lists again, forgets the
/// deleted ServiceAccount and still knows the others.
async fn a_watch_that_cannot_resume_relists(cluster: &Cluster) {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let env = Env::new(cluster, "relist", Registration::default()).await;
    let (indexed, syncs) = (
        "irsa_webhook_serviceaccounts",
        "irsa_webhook_index_syncs_total",
    );
    let before = env.webhook.metric(indexed);
    let syncs_before = env.webhook.metric(syncs);
    env.service_account("kept", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    env.service_account("gone", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    wait_until("the watch adds both", || {
        env.webhook.metric(indexed) == before + 2.0
    })
    .await;

    cluster.stop_apiserver();
    let key = format!("/registry/serviceaccounts/{}/gone", env.ns);
    let deleted = cluster.etcd("kv/deleterange", &json!({"key": b64(&key)}));
    assert_eq!(deleted["deleted"], "1", "{deleted}");
    let put = cluster.etcd(
        "kv/put",
        &json!({"key": b64("/irsa-test/bump"), "value": b64("x")}),
    );
    let revision = put["header"]["revision"].as_str().unwrap().to_owned();
    cluster.etcd(
        "kv/compaction",
        &json!({"revision": revision, "physical": true}),
    );
    cluster.start_apiserver();

    wait_until(
        "the index relists without the deleted ServiceAccount",
        || {
            env.webhook.metric(syncs) == syncs_before + 1.0
                && env.webhook.metric(indexed) == before + 1.0
        },
    )
    .await;
    let api_lookups = "irsa_webhook_serviceaccount_lookups_total{result=\"api_found\"}";
    let lookups_before = env.webhook.metric(api_lookups);
    let env = Env {
        client: cluster.client().await,
        ..env
    };
    let created = env.create(pod("kept-after-relist", "kept", &[])).await;
    assert!(has_token_volume(&created.pod), "{created:?}");
    assert_eq!(
        env.webhook.metric(api_lookups),
        lookups_before,
        "the relisted index knew `kept`"
    );
    env.cleanup().await;
}

/// Polls `done` every 100 ms for up to 60 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhook_restart_resumes_mutating(cluster: &Cluster) {
    let env = Env::new(cluster, "webhook-restart", Registration::default()).await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    let mut env = env;
    let (addr, health) = (env.webhook.addr, env.webhook.health);
    // Same certificate and ports: the registration stays valid.
    env.webhook.restart();
    assert_eq!((env.webhook.addr, env.webhook.health), (addr, health));
    let created = env.create(pod("after-webhook-restart", "app", &[])).await;
    assert!(has_token_volume(&created.pod), "{created:?}");
    env.cleanup().await;
}
