//! An API server that does not stream lists (WatchList off, as before Kubernetes 1.32): the
//! ServiceAccount index, which lists at `resourceVersion=0` and then watches, needs no streaming;
//! it becomes ready and mutates.

use crate::support;

use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{ARN, Env, Registration, has_token_volume, pod};

#[tokio::test]
async fn without_streaming_lists_the_index_is_ready_and_mutates() {
    if support::cluster::skipped_on_own_cluster(
        "e2e_list_fallback",
        "it needs an API server started with WatchList off",
    ) {
        return;
    }
    let cluster = Cluster::start(ClusterOptions {
        apiserver_args: vec!["--feature-gates=WatchList=false".into()],
        ..Default::default()
    });
    let env = Env::new(&cluster, "paged", Registration::default()).await;
    env.service_account("app", &[("eks.amazonaws.com/role-arn", ARN)])
        .await;
    let created = env.create(pod("p", "app", &[])).await;
    assert!(has_token_volume(&created.pod), "{:?}", created.pod);
    env.cleanup().await;
}
