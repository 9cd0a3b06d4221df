//! What `kubectl` would refuse in a workload manifest, told as warnings by `inject`: fields the
//! Kubernetes types do not have (`contianers:`), and kinds that are a slip of a workload kind
//! (`kind: Pods`). Fields are checked against k8s-openapi's types for Kubernetes 1.37.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The kinds `inject` mutates, and where each keeps its pod template.
pub const WORKLOADS: [(&str, &[&str]); 8] = [
    ("Pod", &[]),
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("ReplicationController", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

/// Most unknown fields named for one object.
const MAX_NAMED: usize = 10;

/// Where `kind` keeps its pod template, if it is a workload.
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    WORKLOADS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// The workload kind `kind` was probably meant to be (`Pods`, `deployment`), if any.
pub fn meant_kind(kind: &str) -> Option<&'static str> {
    if kind.is_empty() || template_path(kind).is_some() {
        return None;
    }
    // Short kinds are close to too much (Node and Pod): allow one slip there, two elsewhere.
    let lower = kind.to_ascii_lowercase();
    WORKLOADS.iter().map(|(k, _)| *k).find(|k| {
        let slips = if k.len() <= 4 { 1 } else { 2 };
        strsim::levenshtein(&lower, &k.to_ascii_lowercase()) <= slips
    })
}

/// The fields of `object` (a workload of `kind`) that its Kubernetes type does not have, as
/// dotted paths (`spec.template.spec.contianers`), at most ten; empty for other kinds.
/// Objects that do not even read as their type are reported by the mutation itself.
pub fn unknown_fields(kind: &str, object: &Value) -> Vec<String> {
    match kind {
        "Pod" => unknown::<Pod>(object),
        "Deployment" => unknown::<Deployment>(object),
        "StatefulSet" => unknown::<StatefulSet>(object),
        "DaemonSet" => unknown::<DaemonSet>(object),
        "ReplicaSet" => unknown::<ReplicaSet>(object),
        "Job" => unknown::<Job>(object),
        "ReplicationController" => unknown::<ReplicationController>(object),
        "CronJob" => unknown::<CronJob>(object),
        _ => Vec::new(),
    }
}

fn unknown<T: DeserializeOwned>(object: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    // `status` is written by the cluster; leave it out like kubectl's validation of what you apply.
    let mut note = |path: serde_ignored::Path<'_>| {
        // serde_ignored writes `?` for an `Option`'s `Some`; kubectl's paths have no such step.
        let path = path.to_string();
        let path: Vec<&str> = path.split('.').filter(|step| *step != "?").collect();
        let path = path.join(".");
        if fields.len() < MAX_NAMED && !path.starts_with("status") {
            fields.push(path);
        }
    };
    // One callback type for every kind: the pod template's types (in all eight) are then
    // compiled once, not once per kind.
    let note: &mut dyn FnMut(serde_ignored::Path<'_>) = &mut note;
    let _: Result<T, _> = serde_ignored::deserialize(object, note);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn misspelt_fields_are_found_at_their_path() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "label"}},
            "spec": {"replicas": 2, "selector": {}, "template": {"spec": {
                "contianers": [{"name": "a"}],
                "containers": [{"name": "b", "imagePullPolicy": "Always", "imge": "x"}],
            }}},
        });
        assert_eq!(
            unknown_fields("Deployment", &deployment),
            [
                "spec.template.spec.contianers",
                "spec.template.spec.containers.0.imge"
            ]
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": {"a": "b"}},
                         "spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}});
        assert!(unknown_fields("Pod", &pod).is_empty());
        assert!(unknown_fields("ConfigMap", &json!({"whatever": 1})).is_empty());
    }

    #[test]
    fn kinds_close_to_a_workload_kind_are_named() {
        assert_eq!(meant_kind("Pods"), Some("Pod"));
        assert_eq!(meant_kind("deployment"), Some("Deployment"));
        assert_eq!(meant_kind("Statefulset"), Some("StatefulSet"));
        assert_eq!(meant_kind("CronJobs"), Some("CronJob"));
        assert_eq!(meant_kind("Deployment"), None);
        assert_eq!(meant_kind("ConfigMap"), None);
        assert_eq!(meant_kind("Service"), None);
        assert_eq!(meant_kind("Node"), None);
        assert_eq!(meant_kind("Role"), None);
        assert_eq!(meant_kind(""), None);
    }
}
