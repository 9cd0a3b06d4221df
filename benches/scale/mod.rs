//! ServiceAccounts at scale in a real API server, for the benches that start `serve` against
//! one: `sa-<i>` in namespaces `scale-0` .. `scale-99`, one in two annotated with a role; and
//! what those benches read of the processes they start.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

/// How many namespaces the ServiceAccounts are spread over.
pub const NAMESPACES: usize = 100;

/// Creates the namespaces `scale-0` .. `scale-99` and `extra`.
pub async fn create_namespaces(client: &kube::Client, extra: &[&str]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names = (0..NAMESPACES)
        .map(|n| format!("scale-{n}"))
        .chain(extra.iter().map(|n| n.to_string()));
    for name in names {
        let ns = json!({"metadata": {"name": name}});
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(ns).unwrap())
            .await
            .unwrap();
    }
}

/// Creates ServiceAccounts `sa-<from>` .. `sa-<to - 1>`, 32 requests at a time.
pub async fn create_service_accounts(client: &kube::Client, from: usize, to: usize) {
    futures::stream::iter(from..to)
        .map(|i| {
            let sas: Api<ServiceAccount> =
                Api::namespaced(client.clone(), &format!("scale-{}", i % NAMESPACES));
            let mut sa = json!({"metadata": {"name": format!("sa-{i}")}});
            if i % 2 == 0 {
                sa["metadata"]["annotations"] = json!({
                    "eks.amazonaws.com/role-arn": format!("arn:aws:iam::111122223333:role/r{i}"),
                });
            }
            async move {
                sas.create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
