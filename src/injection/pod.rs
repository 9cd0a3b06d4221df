//! A lean, borrowing view of the few Pod fields the mutation reads.
//!
//! We never serialise this view back: the patch only adds, so fields we do not model
//! (including ones newer than any Kubernetes release we know) survive untouched.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// String map such as annotations or a node selector.
pub type StrMap<'a> = HashMap<Cow<'a, str>, Cow<'a, str>>;

/// The parts of a Pod (or pod template) the webhook reads.
#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub metadata: Meta<'a>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub spec: Spec<'a>,
}

/// Pod metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub annotations: StrMap<'a>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub labels: StrMap<'a>,
}

/// Pod spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    #[serde(borrow, default)]
    pub service_account_name: Option<Cow<'a, str>>,
    /// Deprecated alias of `serviceAccountName`, still accepted by the API server.
    #[serde(borrow, default)]
    pub service_account: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub node_selector: StrMap<'a>,
    #[serde(borrow, default)]
    pub os: Option<PodOs<'a>>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub containers: Vec<Container<'a>>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub init_containers: Vec<Container<'a>>,
    /// `None` when the pod has no `volumes` array (the patch must create it).
    #[serde(borrow, default)]
    pub volumes: Option<Vec<Volume<'a>>>,
}

/// `spec.os`.
#[derive(Debug, Default, Deserialize)]
pub struct PodOs<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
}

/// A container or init container.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    /// `None` when the container has no `env` array.
    #[serde(borrow, default)]
    pub env: Option<Vec<Named<'a>>>,
    /// `None` when the container has no `volumeMounts` array.
    #[serde(borrow, default)]
    pub volume_mounts: Option<Vec<VolumeMount<'a>>>,
}

/// Anything of which only the name matters (an env var).
#[derive(Debug, Default, Deserialize)]
pub struct Named<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

/// A container's volume mount.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub mount_path: Cow<'a, str>,
}

/// A pod volume; only projected service-account tokens are looked into.
#[derive(Debug, Default, Deserialize)]
pub struct Volume<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub projected: Option<Projected<'a>>,
}

/// `volumes[].projected`.
#[derive(Debug, Default, Deserialize)]
pub struct Projected<'a> {
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub sources: Vec<ProjectionSource<'a>>,
}

/// `volumes[].projected.sources[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionSource<'a> {
    #[serde(borrow, default)]
    pub service_account_token: Option<TokenProjection<'a>>,
}

/// `serviceAccountToken` projection.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenProjection<'a> {
    #[serde(borrow, default)]
    pub audience: Option<Cow<'a, str>>,
    #[serde(default)]
    pub expiration_seconds: Option<i64>,
    #[serde(borrow, default)]
    pub path: Cow<'a, str>,
}

impl<'a> PodView<'a> {
    /// Parses the view from JSON bytes, borrowing strings where possible.
    pub fn from_slice(json: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }

    /// The ServiceAccount the pod runs as (`default` when unset, as Kubernetes does).
    pub fn service_account(&self) -> &str {
        [&self.spec.service_account_name, &self.spec.service_account]
            .into_iter()
            .flatten()
            .map(|s| s.as_ref())
            .find(|s| !s.is_empty())
            .unwrap_or("default")
    }

    /// Whether the pod runs on Windows, by `spec.os.name` or the node selector.
    pub fn is_windows(&self) -> bool {
        let windows = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("windows"));
        windows(self.spec.os.as_ref().and_then(|os| os.name.as_deref()))
            || ["kubernetes.io/os", "beta.kubernetes.io/os"]
                .iter()
                .any(|k| windows(self.spec.node_selector.get(*k).map(|v| v.as_ref())))
    }

    /// The pod's annotation `key`, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.get(key).map(|v| v.as_ref())
    }

    /// A name for log lines and warnings: `name`, else `generateName*`, else `<unnamed>`.
    pub fn display_name(&self) -> Cow<'_, str> {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(n), _) if !n.is_empty() => Cow::Borrowed(n.as_ref()),
            (_, Some(g)) if !g.is_empty() => Cow::Owned(format!("{g}*")),
            _ => Cow::Borrowed("<unnamed>"),
        }
    }
}

impl Volume<'_> {
    /// The service-account token projection of this volume, if it is a projected token volume.
    pub fn token_projection(&self) -> Option<&TokenProjection<'_>> {
        self.projected
            .as_ref()?
            .sources
            .iter()
            .find_map(|s| s.service_account_token.as_ref())
    }
}

/// Treats an explicit JSON `null` like an absent field.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_it_needs_and_tolerates_nulls() {
        let json = br#"{
            "metadata": {"generateName": "web-", "annotations": null, "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "app", "env": null, "image": "x", "futureField": {"x": 1}}],
                "initContainers": null,
                "nodeSelector": {"kubernetes.io/os": "windows"},
                "futureField": [1, 2, 3]
            }
        }"#;
        let pod = PodView::from_slice(json).unwrap();
        assert_eq!(pod.display_name(), "web-*");
        assert_eq!(pod.service_account(), "default");
        assert!(pod.is_windows());
        assert!(pod.spec.containers[0].env.is_none());
        assert!(pod.spec.init_containers.is_empty());
        assert!(pod.spec.volumes.is_none());
    }

    #[test]
    fn service_account_falls_back_to_the_deprecated_field() {
        let pod = PodView::from_slice(br#"{"spec": {"serviceAccount": "legacy"}}"#).unwrap();
        assert_eq!(pod.service_account(), "legacy");
        let pod = PodView::from_slice(
            br#"{"spec": {"serviceAccountName": "new", "serviceAccount": "legacy"}}"#,
        )
        .unwrap();
        assert_eq!(pod.service_account(), "new");
    }

    #[test]
    fn windows_by_spec_os_and_beta_label() {
        for json in [
            &br#"{"spec": {"os": {"name": "windows"}}}"#[..],
            br#"{"spec": {"nodeSelector": {"beta.kubernetes.io/os": "windows"}}}"#,
        ] {
            assert!(PodView::from_slice(json).unwrap().is_windows());
        }
        let linux = PodView::from_slice(br#"{"spec": {"os": {"name": "linux"}}}"#).unwrap();
        assert!(!linux.is_windows());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let pod =
            PodView::from_slice(br#"{"metadata": {"annotations": {"a\/b": "x\u0041"}}}"#).unwrap();
        assert_eq!(pod.annotation("a/b"), Some("xA"));
    }
}
