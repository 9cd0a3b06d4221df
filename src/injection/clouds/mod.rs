//! Workload identity for clouds beside AWS, each a profile of data: which pods it applies to,
//! the projected token (audience, lifetime, file), the environment, and any generated file. One
//! engine ([`apply`]) turns a profile's [`Injection`] into the same targeted `add` operations as
//! the AWS injection: variables only where a container does not define them, the mount only
//! where nothing is mounted at that path, the volume unless present, never a denial. A pod may
//! get several clouds: their volumes, mounts and variables have distinct names.

pub mod azure;
pub mod gcp;

use std::collections::HashSet;

use json_patch::PatchOperation;
use json_patch::jsonptr::{PointerBuf, Token};
use serde_json::{Value, json};

use super::patch::{self, ContainerAt, push_adds};
use super::pod::PodView;

/// What one cloud wants in a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// For warnings: `Azure`, `Google Cloud`.
    pub cloud: &'static str,
    pub volume_name: &'static str,
    /// The projected sources of the volume.
    pub sources: Value,
    /// Directory the volume is mounted at, read-only.
    pub mount_path: String,
    /// Variables, each set only in containers that do not define it.
    pub env: Vec<(&'static str, String)>,
    /// Containers left alone.
    pub skip: HashSet<String>,
    /// Pod annotations to set (a generated file the volume projects).
    pub annotations: Vec<(&'static str, String)>,
}

/// Appends the operations that give `pod` the injection, after those already in `ops`; returns
/// false (with a warning) when a volume of another kind has the name.
pub fn apply(
    pod: &PodView<'_>,
    injection: &Injection,
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
) -> bool {
    let name = injection.volume_name;
    let existing = pod.spec.volumes.iter().flatten().find(|v| v.name == name);
    if existing.is_some_and(|v| v.projected.is_none()) {
        warnings.push(format!(
            "the pod already has a volume named {name} that is not projected: {} credentials not injected; rename that volume",
            injection.cloud
        ));
        return false;
    }
    for (key, value) in &injection.annotations {
        if pod.annotation(key) != Some(value.as_str()) {
            let map = PointerBuf::from_tokens(["metadata", "annotations"]);
            if pod.metadata.annotations.is_empty() && !patch::creates(ops, &map) {
                ops.push(patch::add(map, json!({ *key: value })));
            } else {
                let mut path = map;
                path.push_back(Token::new(*key));
                ops.push(patch::add(path, json!(value)));
            }
        }
    }
    let lists = [
        ("initContainers", &*pod.spec.init_containers),
        ("containers", &*pod.spec.containers),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            if injection.skip.contains(container.name.as_ref()) {
                continue;
            }
            let at = ContainerAt { list, index };
            let defined = |var: &str| container.env.iter().flatten().any(|e| e.name == var);
            let vars = injection
                .env
                .iter()
                .filter(|(var, _)| !defined(var))
                .map(|(var, value)| json!({"name": var, "value": value}));
            let env_exists = container.env.is_some() || patch::creates(ops, &at.path("env", false));
            push_adds(&at, "env", env_exists, vars.collect::<Vec<_>>(), ops);
            let mounted = container.volume_mounts.iter().flatten().any(|m| {
                m.name == name || m.mount_path.trim_end_matches('/') == injection.mount_path
            });
            if !mounted {
                let mount =
                    json!({"name": name, "mountPath": injection.mount_path, "readOnly": true});
                let exists = container.volume_mounts.is_some()
                    || patch::creates(ops, &at.path("volumeMounts", false));
                push_adds(&at, "volumeMounts", exists, [mount], ops);
            }
        }
    }
    if existing.is_none() {
        let volumes = PointerBuf::from_tokens(["spec", "volumes"]);
        let exists = pod.spec.volumes.is_some() || patch::creates(ops, &volumes);
        let volume = json!({"name": name, "projected": {"sources": injection.sources}});
        ops.push(patch::add_volume(exists, volume));
    }
    true
}

/// A GUID as Azure and Entra ID write them: 8-4-4-4-12 hexadecimal digits.
pub fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests;
