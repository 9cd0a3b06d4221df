//! Property-based fuzzing of the admission path (`parse` → `mutate` → `answer`) on stable Rust:
//! random edits of the realistic review in `bench/fixtures` (container counts, env, mounts,
//! volumes, annotations, junk values where objects belong), each checked for: no panic, a
//! patch that applies to the pod, no field of the pod lost, nothing more added on a second
//! run, and an answer bounded by the request. The number of cases bounds its time
//! (`PROPTEST_CASES` overrides it).

use base64::Engine;
use irsa_webhook::injection::config::InjectionConfig;
use irsa_webhook::injection::identity::SaAnnotations;
use irsa_webhook::injection::mutation::{Decision, ServiceAccount, mutate};
use irsa_webhook::webhook::admission::{self, ANSWER_FACTOR, ANSWER_SLACK, Target};
use proptest::prelude::*;
use serde_json::{Value, json};

const PREFIX: &str = "eks.amazonaws.com";

fn fixture() -> Value {
    let text = include_str!("../../bench/fixtures/admission-review.json");
    serde_json::from_str(text).unwrap()
}

/// One edit of the pod in the review.
#[derive(Debug, Clone)]
enum Edit {
    Containers {
        list: &'static str,
        count: usize,
    },
    Env {
        container: usize,
        name: &'static str,
    },
    Mount {
        container: usize,
        ours_by_name: bool,
        ours_by_path: bool,
    },
    Volume {
        ours: bool,
        token: bool,
    },
    Annotation {
        key: &'static str,
        value: String,
    },
    Junk {
        path: &'static str,
        value: Value,
    },
    Windows,
}

fn edit() -> impl Strategy<Value = Edit> {
    let env_names = prop::sample::select(vec![
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "OTHER",
    ]);
    let keys = prop::sample::select(vec![
        "skip-containers",
        "include-containers",
        "token-expiration",
        "skip-pod-identity-webhook",
        "role-arn",
    ]);
    let values = prop_oneof![
        "[a-z0-9, \"]{0,40}",
        Just("app, sidecar".to_owned()),
        Just("600".to_owned()),
        Just("true".to_owned()),
        (0..400usize).prop_map(|n| (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")),
    ];
    let paths = prop::sample::select(vec![
        "/spec/containers/0",
        "/spec/containers",
        "/spec/initContainers",
        "/spec/volumes",
        "/spec/volumes/0",
        "/spec/containers/0/env",
        "/spec/containers/0/env/0",
        "/spec/containers/0/volumeMounts",
        "/metadata/annotations",
        "/spec/nodeSelector",
        "/spec/os",
    ]);
    let junk = prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
        Just(json!(1)),
        Just(json!("s")),
        Just(json!(true)),
        Just(json!([{}, []])),
    ];
    prop_oneof![
        (
            prop::sample::select(vec!["containers", "initContainers"]),
            0..300usize
        )
            .prop_map(|(list, count)| Edit::Containers { list, count }),
        (0..3usize, env_names).prop_map(|(container, name)| Edit::Env { container, name }),
        (0..3usize, any::<bool>(), any::<bool>()).prop_map(
            |(container, ours_by_name, ours_by_path)| {
                Edit::Mount {
                    container,
                    ours_by_name,
                    ours_by_path,
                }
            }
        ),
        (any::<bool>(), any::<bool>()).prop_map(|(ours, token)| Edit::Volume { ours, token }),
        (keys, values).prop_map(|(key, value)| Edit::Annotation { key, value }),
        (paths, junk).prop_map(|(path, value)| Edit::Junk { path, value }),
        Just(Edit::Windows),
    ]
}

fn apply(pod: &mut Value, edit: &Edit) {
    let Some(spec) = pod.get_mut("spec") else {
        return;
    };
    match edit {
        Edit::Containers { list, count } => {
            let template = spec.pointer("/containers/0").cloned().unwrap_or(json!({}));
            let Some(spec) = spec.as_object_mut() else {
                return;
            };
            let items = (0..*count)
                .map(|i| {
                    let mut c = template.clone();
                    if let Some(c) = c.as_object_mut() {
                        c.insert("name".into(), json!(format!("c{i}")));
                    }
                    c
                })
                .collect();
            spec.insert((*list).into(), items);
        }
        Edit::Env { container, name } => {
            let env = spec.pointer_mut(&format!("/containers/{container}/env"));
            if let Some(env) = env.and_then(Value::as_array_mut) {
                env.push(json!({"name": name, "value": "user"}));
            }
        }
        Edit::Mount {
            container,
            ours_by_name,
            ours_by_path,
        } => {
            let c = spec.pointer_mut(&format!("/containers/{container}"));
            if let Some(c) = c.and_then(Value::as_object_mut) {
                let name = if *ours_by_name {
                    "aws-iam-token"
                } else {
                    "other"
                };
                let path = if *ours_by_path {
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount"
                } else {
                    "/data"
                };
                let mounts = c.entry("volumeMounts").or_insert(json!([]));
                if let Some(mounts) = mounts.as_array_mut() {
                    mounts.push(json!({"name": name, "mountPath": path}));
                }
            }
        }
        Edit::Volume { ours, token } => {
            let name = if *ours { "aws-iam-token" } else { "other" };
            let volume = if *token {
                json!({"name": name, "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}})
            } else {
                json!({"name": name, "configMap": {"name": "x"}})
            };
            if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
                volumes.push(volume);
            }
        }
        Edit::Annotation { key, value } => {
            let annotations = pod.pointer_mut("/metadata/annotations");
            if let Some(annotations) = annotations.and_then(Value::as_object_mut) {
                annotations.insert(format!("{PREFIX}/{key}"), json!(value));
            }
        }
        Edit::Junk { path, value } => {
            if let Some(slot) = pod.pointer_mut(path) {
                *slot = value.clone();
            }
        }
        Edit::Windows => {
            if let Some(spec) = spec.as_object_mut() {
                spec.insert(
                    "nodeSelector".into(),
                    json!({"kubernetes.io/os": "windows"}),
                );
            }
        }
    }
}

/// Every leaf of `value` with its JSON pointer.
fn leaves(value: &Value, at: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        leaf => out.push((at, leaf.clone())),
    }
}

fn service_account() -> impl Strategy<Value = Option<Option<SaAnnotations>>> {
    let annotations = (
        prop_oneof![
            Just("arn:aws:iam::111122223333:role/app".to_owned()),
            "[ -~]{0,80}",
        ],
        proptest::option::of("[a-z.]{0,20}"),
        proptest::option::of(prop::sample::select(vec!["true", "false", "1", "x"])),
        proptest::option::of(prop::sample::select(vec![
            "3600",
            "1",
            "abc",
            "99999999999",
        ])),
        proptest::option::of(prop::sample::select(vec!["eu-west-1", "seattle", ""])),
    )
        .prop_map(|(role_arn, audience, sts, expiration, region)| {
            // As the index stores them: read from the ServiceAccount's annotations.
            let pairs = [
                ("role-arn", Some(role_arn)),
                ("audience", audience),
                ("sts-regional-endpoints", sts.map(str::to_owned)),
                ("token-expiration", expiration.map(str::to_owned)),
                ("region", region.map(str::to_owned)),
            ];
            let keys: Vec<(String, String)> = pairs
                .into_iter()
                .filter_map(|(k, v)| Some((format!("eks.amazonaws.com/{k}"), v?)))
                .collect();
            SaAnnotations::from_annotations(
                &InjectionConfig::default(),
                keys.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .expect("a role-arn annotation")
        });
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(None)),
        6 => annotations.prop_map(|a| Some(Some(a))),
    ]
}

fn run(
    body: &[u8],
    sa: &Option<Option<SaAnnotations>>,
    cfg: &InjectionConfig,
) -> Option<(Vec<u8>, Option<irsa_webhook::injection::mutation::Outcome>)> {
    let review = admission::parse(body).ok()?;
    let outcome = match &review.target {
        Target::Other => None,
        Target::PodCreate { pod, .. } => {
            let sa = match sa {
                None => ServiceAccount::NotFound,
                Some(annotations) => ServiceAccount::Found(annotations.as_ref()),
            };
            Some(mutate(pod, "team-042/checkout-api", sa, cfg))
        }
    };
    Some(admission::answer(&review, outcome, body.len()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn admission_path_never_panics_loses_nothing_and_stays_bounded(
        edits in prop::collection::vec(edit(), 0..6),
        sa in service_account(),
    ) {
        let cfg = InjectionConfig::default();
        let mut review = fixture();
        for edit in &edits {
            apply(&mut review["request"]["object"], edit);
        }
        let body = serde_json::to_vec(&review).unwrap();
        let Some((answer, outcome)) = run(&body, &sa, &cfg) else {
            return Ok(()); // a 400: the API server's failurePolicy decides
        };
        prop_assert!(answer.len() <= ANSWER_FACTOR * body.len() + ANSWER_SLACK);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        prop_assert_eq!(&answer["response"]["allowed"], &json!(true));
        let Some(outcome) = outcome else { return Ok(()) };
        let pod = &review["request"]["object"];
        let Some(patch) = answer["response"]["patch"].as_str() else {
            prop_assert!(outcome.decision != Decision::Mutated);
            return Ok(());
        };
        let patch = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch).map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
        let mut before = Vec::new();
        leaves(pod, String::new(), &mut before);
        // A null is the same as an absent field to Kubernetes, so the patch may fill it; an
        // empty array or object may gain members; every other leaf stays as it was.
        for (path, value) in before {
            let now = patched.pointer(&path);
            match &value {
                Value::Null => {}
                Value::Array(a) if a.is_empty() => prop_assert!(now.is_some_and(Value::is_array), "{} lost", path),
                Value::Object(o) if o.is_empty() => prop_assert!(now.is_some_and(Value::is_object), "{} lost", path),
                _ => prop_assert_eq!(now, Some(&value), "{} lost", path),
            }
        }
        // Once mutated, nothing more is added.
        review["request"]["object"] = patched;
        let body = serde_json::to_vec(&review).unwrap();
        let (answer, again) = run(&body, &sa, &cfg).expect("the patched pod parses");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        prop_assert!(answer["response"].get("patch").is_none(), "second run patched again: {:?}", again);
    }
}
