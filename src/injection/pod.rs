//! A lean, borrowing view of the few Pod fields the mutation reads.
//!
//! We never serialise this view back: the patch only adds, so fields we do not model
//! (including ones newer than any Kubernetes release we know) survive untouched.
//!
//! The view's cost is bounded whatever the body holds: every list keeps at most a fixed number
//! of items and skips the rest unread ([`List`]), and [`PodView::exceeded_limits`] says when a
//! pod is beyond what the webhook will patch. Objects must be JSON objects: serde would
//! otherwise accept `[]` for a struct, and a patch into an array-shaped container cannot apply.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};

/// Most containers plus init containers the webhook patches; far above any real pod.
pub const MAX_CONTAINERS: usize = 256;
/// Most items of one list (a container's env or volume mounts, the pod's volumes, a projected
/// volume's sources) the view keeps; beyond it the pod is not patched.
pub const MAX_LIST_ITEMS: usize = 1024;

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
    pub containers: List<Container<'a>, MAX_CONTAINERS>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub init_containers: List<Container<'a>, MAX_CONTAINERS>,
    /// `None` when the pod has no `volumes` array (the patch must create it).
    #[serde(borrow, default)]
    pub volumes: Option<List<Volume<'a>>>,
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
    pub env: Option<List<Named<'a>>>,
    /// `None` when the container has no `volumeMounts` array.
    #[serde(borrow, default)]
    pub volume_mounts: Option<List<VolumeMount<'a>>>,
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
    pub sources: List<ProjectionSource<'a>>,
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

    /// Which limit of the webhook the pod exceeds, if any: more than [`MAX_CONTAINERS`]
    /// containers and init containers, or a list longer than [`MAX_LIST_ITEMS`].
    pub fn exceeded_limits(&self) -> Option<String> {
        let spec = &self.spec;
        let containers = spec.containers.len() + spec.init_containers.len();
        if containers > MAX_CONTAINERS
            || spec.containers.truncated()
            || spec.init_containers.truncated()
        {
            return Some(format!(
                "more than {MAX_CONTAINERS} containers and init containers"
            ));
        }
        let long = |field: &str| Some(format!("a {field} list longer than {MAX_LIST_ITEMS} items"));
        for container in spec.init_containers.iter().chain(spec.containers.iter()) {
            if container.env.as_ref().is_some_and(|l| l.truncated()) {
                return long("container env");
            }
            if container
                .volume_mounts
                .as_ref()
                .is_some_and(|l| l.truncated())
            {
                return long("container volumeMounts");
            }
        }
        let volumes = spec.volumes.iter().flatten();
        if spec.volumes.as_ref().is_some_and(|l| l.truncated())
            || volumes
                .filter_map(|v| v.projected.as_ref())
                .any(|p| p.sources.truncated())
        {
            return long("volumes or projected sources");
        }
        None
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

/// A JSON array read into at most `N` items, each a JSON object; the items past `N` are skipped
/// unread (no memory) and [`List::truncated`] says so.
#[derive(Debug)]
pub struct List<T, const N: usize = MAX_LIST_ITEMS> {
    items: Vec<T>,
    truncated: bool,
}

impl<T, const N: usize> List<T, N> {
    /// Whether the array held more than `N` items.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<T, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            truncated: false,
        }
    }
}

impl<T, const N: usize> Deref for List<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<'l, T, const N: usize> IntoIterator for &'l List<T, N> {
    type Item = &'l T;
    type IntoIter = std::slice::Iter<'l, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for List<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Items<T, N> {
            type Value = List<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = List::default();
                while list.items.len() < N {
                    match seq.next_element::<Object<T>>()? {
                        Some(Object(item)) => list.items.push(item),
                        None => return Ok(list),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    list.truncated = true;
                }
                Ok(list)
            }
        }
        d.deserialize_seq(Items(PhantomData))
    }
}

/// `T` read only from a JSON object: a derived struct would also accept an array.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Object)
    }
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

    #[test]
    fn lists_keep_a_bounded_number_of_items_and_say_when_they_were_cut() {
        let containers = |n: usize| {
            let list = vec![r#"{"name":"c"}"#; n].join(",");
            format!(r#"{{"spec": {{"containers": [{list}]}}}}"#)
        };
        let pod = containers(MAX_CONTAINERS);
        let pod = PodView::from_slice(pod.as_bytes()).unwrap();
        assert_eq!(pod.spec.containers.len(), MAX_CONTAINERS);
        assert_eq!(pod.exceeded_limits(), None);

        let pod = containers(MAX_CONTAINERS + 5);
        let pod = PodView::from_slice(pod.as_bytes()).unwrap();
        assert_eq!(
            pod.spec.containers.len(),
            MAX_CONTAINERS,
            "the rest is skipped"
        );
        assert!(pod.spec.containers.truncated());
        assert_eq!(
            pod.exceeded_limits().unwrap(),
            "more than 256 containers and init containers"
        );

        let half = vec![r#"{}"#; MAX_CONTAINERS / 2 + 1].join(",");
        let pod = format!(r#"{{"spec": {{"containers": [{half}], "initContainers": [{half}]}}}}"#);
        let pod = PodView::from_slice(pod.as_bytes()).unwrap();
        assert!(pod.exceeded_limits().is_some(), "both lists count");

        let env = vec![r#"{"name":"X"}"#; MAX_LIST_ITEMS + 1].join(",");
        let pod = format!(r#"{{"spec": {{"containers": [{{"name": "c", "env": [{env}]}}]}}}}"#);
        let pod = PodView::from_slice(pod.as_bytes()).unwrap();
        assert_eq!(
            pod.exceeded_limits().unwrap(),
            "a container env list longer than 1024 items"
        );

        let volumes = vec![r#"{"name":"v"}"#; MAX_LIST_ITEMS + 1].join(",");
        let pod = format!(r#"{{"spec": {{"volumes": [{volumes}]}}}}"#);
        let pod = PodView::from_slice(pod.as_bytes()).unwrap();
        assert_eq!(
            pod.exceeded_limits().unwrap(),
            "a volumes or projected sources list longer than 1024 items"
        );
    }

    #[test]
    fn list_items_must_be_objects() {
        for json in [
            &br#"{"spec": {"containers": [[]]}}"#[..],
            br#"{"spec": {"containers": [{"name": "a"}, "b"]}}"#,
            br#"{"spec": {"initContainers": [1]}}"#,
            br#"{"spec": {"containers": [{"name": "a", "env": [[]]}]}}"#,
            br#"{"spec": {"volumes": [["aws-iam-token"]]}}"#,
        ] {
            let err = PodView::from_slice(json).unwrap_err().to_string();
            assert!(err.contains("expected an object"), "{err}");
        }
        let err = PodView::from_slice(br#"{"spec": {"containers": {}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected an array of objects"), "{err}");
    }
}
