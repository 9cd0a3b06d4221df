//! Table-driven tests of the behaviour contract: each applies our patch and compares the pod.

use super::*;
use crate::injection::config::InjectionSettings;
use serde::Deserialize;
use serde_json::json;

const ARN: &str = "arn:aws:iam::111122223333:role/app";
const MOUNT: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
const TOKEN: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn sa(pairs: &[(&str, &str)]) -> SaAnnotations {
    SaAnnotations::named(pairs).expect("role-arn present")
}

/// Runs the mutation and returns the patched pod with the outcome.
fn run_with(pod: &Value, sa: ServiceAccount<'_>, cfg: &InjectionConfig) -> (Value, Outcome) {
    let view = crate::injection::pod::PodView::deserialize(pod).unwrap();
    let outcome = mutate(&view, "ns/app", sa, cfg);
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &outcome.patch).expect("patch applies");
    for op in &outcome.patch.0 {
        assert!(matches!(op, PatchOperation::Add(_)), "only add ops: {op:?}");
    }
    (patched, outcome)
}

fn run(pod: &Value, annotations: &[(&str, &str)]) -> (Value, Outcome) {
    let sa = sa(annotations);
    run_with(
        pod,
        ServiceAccount::Found(Some(&sa)),
        &InjectionConfig::default(),
    )
}

fn volume(audience: &str, expiration: i64) -> Value {
    json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
        {"audience": audience, "expirationSeconds": expiration, "path": "token"}}]}})
}

fn mount() -> Value {
    json!({"name": "aws-iam-token", "mountPath": MOUNT, "readOnly": true})
}

fn role_env(token_file: &str) -> [Value; 2] {
    [
        json!({"name": "AWS_ROLE_ARN", "value": ARN}),
        json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file}),
    ]
}

fn simple_pod() -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app"}]}})
}

#[test]
fn plain_pod_gets_volume_mount_and_env() {
    let (pod, out) = run(&simple_pod(), &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        pod,
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "app", "image": "app", "env": role_env(TOKEN), "volumeMounts": [mount()]}],
            "volumes": [volume("sts.amazonaws.com", 86400)],
        }})
    );
    assert_eq!(out.role_arn.as_deref(), Some(ARN));
}

#[test]
fn existing_arrays_are_appended_to_never_replaced() {
    let input = json!({"spec": {
        "containers": [{"name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    let [role, token] = role_env(TOKEN);
    assert_eq!(
        pod,
        json!({"spec": {
            "containers": [{"name": "app",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}, role, token],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, mount()]}],
            "volumes": [{"name": "data", "emptyDir": {}}, volume("sts.amazonaws.com", 86400)],
        }})
    );
    let paths: Vec<String> = out.patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/spec/volumes/-",
            "/spec/containers/0/env/-",
            "/spec/containers/0/env/-",
            "/spec/containers/0/volumeMounts/-",
        ]
    );
}

#[test]
fn env_order_and_every_variable() {
    let (pod, out) = run(
        &simple_pod(),
        &[
            ("role-arn", ARN),
            ("sts-regional-endpoints", "true"),
            ("region", "eu-west-1"),
            ("audience", "custom-aud"),
            ("token-expiration", "3600"),
        ],
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let [role, token] = role_env(TOKEN);
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        json!([
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
            {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
            {"name": "AWS_REGION", "value": "eu-west-1"},
            role, token,
        ])
    );
    assert_eq!(pod["spec"]["volumes"][0], volume("custom-aud", 3600));
}

#[test]
fn variables_already_defined_are_not_overridden() {
    let input = json!({"spec": {"containers": [{"name": "app", "env": [
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "legacy"},
        {"name": "AWS_REGION", "value": "us-east-1"},
        {"name": "AWS_ROLE_ARN", "value": "mine"},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/mine"},
    ]}]}});
    let (pod, out) = run(
        &input,
        &[
            ("role-arn", ARN),
            ("sts-regional-endpoints", "true"),
            ("region", "eu-west-1"),
        ],
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        input["spec"]["containers"][0]["env"]
    );
    // Unlike the reference webhook, a container with every variable predefined still gets the mount.
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([mount()])
    );
    assert_eq!(out.decision, Decision::Mutated);
}

#[test]
fn half_defined_role_env_is_a_conflict() {
    let input = json!({"spec": {"containers": [{"name": "app", "env": [{"name": "AWS_ROLE_ARN", "value": "mine"}]}]}});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        json!([{"name": "AWS_ROLE_ARN", "value": "mine"}])
    );
    assert_eq!(
        out.warnings,
        ["container app sets AWS_ROLE_ARN but not AWS_WEB_IDENTITY_TOKEN_FILE: neither injected"]
    );
}

#[test]
fn region_from_flag_and_annotation() {
    let cfg = InjectionConfig::new(InjectionSettings {
        aws_default_region: Some("ap-south-1"),
        sts_regional_endpoint: true,
        ..settings()
    })
    .unwrap();
    let sa_default = sa(&[("role-arn", ARN)]);
    let (pod, _) = run_with(
        &simple_pod(),
        ServiceAccount::Found(Some(&sa_default)),
        &cfg,
    );
    let env = &pod["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "regional");
    assert_eq!(
        env[1],
        json!({"name": "AWS_DEFAULT_REGION", "value": "ap-south-1"})
    );
    let sa_region = sa(&[
        ("role-arn", ARN),
        ("region", "eu-central-1"),
        ("sts-regional-endpoints", "false"),
    ]);
    let (pod, _) = run_with(&simple_pod(), ServiceAccount::Found(Some(&sa_region)), &cfg);
    let env = &pod["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0],
        json!({"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"})
    );
    assert_eq!(
        env[1],
        json!({"name": "AWS_REGION", "value": "eu-central-1"})
    );
    assert_eq!(env.as_array().unwrap().len(), 4);
}

fn settings() -> InjectionSettings<'static> {
    InjectionSettings {
        token_mount_path: MOUNT,
        ..InjectionSettings::default()
    }
}

#[test]
fn unannotated_missing_and_unreadable_service_accounts() {
    let cfg = InjectionConfig::default();
    let cases = [
        (ServiceAccount::Found(None), Decision::NoRole, None),
        (
            ServiceAccount::NotFound,
            Decision::ServiceAccountNotFound,
            Some("ServiceAccount ns/app not found: AWS credentials not injected"),
        ),
        (
            ServiceAccount::Unavailable("timed out after 2s"),
            Decision::ServiceAccountUnavailable,
            Some(
                "ServiceAccount ns/app could not be read (timed out after 2s): AWS credentials not injected",
            ),
        ),
    ];
    for (sa, decision, warning) in cases {
        let (pod, out) = run_with(&simple_pod(), sa, &cfg);
        assert_eq!(pod, simple_pod());
        assert_eq!(out.decision, decision);
        assert_eq!(out.warnings, warning.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn opt_out_annotation() {
    let mut input = simple_pod();
    input["metadata"]["annotations"] =
        json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(pod, input);
    assert_eq!(out.decision, Decision::OptedOut);

    input["metadata"]["annotations"] =
        json!({"eks.amazonaws.com/skip-pod-identity-webhook": "yes"});
    let (_, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    assert!(out.warnings[0].contains("is not \"true\": the pod is not opted out"));
}

#[test]
fn init_containers_and_native_sidecars_keep_their_fields() {
    let input = json!({"spec": {
        "initContainers": [
            {"name": "setup"},
            {"name": "proxy", "restartPolicy": "Always", "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]},
        ],
        "containers": [{"name": "app"}],
    }});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    for c in ["initContainers", "containers"] {
        for container in pod["spec"][c].as_array().unwrap() {
            assert_eq!(container["env"], json!(role_env(TOKEN)), "{container}");
            assert_eq!(container["volumeMounts"], json!([mount()]));
        }
    }
    assert_eq!(pod["spec"]["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(
        pod["spec"]["initContainers"][1]["resizePolicy"],
        input["spec"]["initContainers"][1]["resizePolicy"]
    );
}

#[test]
fn skip_and_include_containers() {
    let containers = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [bool; 3], &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            &[("skip-containers", " a , c ")],
            &[false, true, false],
            &[],
        ),
        (
            &[("skip-containers", "a,ghost")],
            &[false, true, true],
            &["eks.amazonaws.com/skip-containers names no container of this pod: ghost"],
        ),
        (&[("include-containers", "b")], &[false, true, false], &[]),
        (
            &[("include-containers", "a,b"), ("skip-containers", "b")],
            &[true, false, false],
            &[],
        ),
        (
            &[("include-containers", "x,y")],
            &[false, false, false],
            &["eks.amazonaws.com/include-containers names no container of this pod: x, y"],
        ),
    ];
    for (annotations, injected, warnings) in cases {
        let mut input =
            json!({"metadata": {"annotations": {}}, "spec": {"containers": containers}});
        for (k, v) in annotations {
            input["metadata"]["annotations"][format!("eks.amazonaws.com/{k}")] = json!(v);
        }
        let (pod, out) = run(&input, &[("role-arn", ARN)]);
        for (i, expected) in injected.iter().enumerate() {
            let has_env = pod["spec"]["containers"][i].get("env").is_some();
            assert_eq!(has_env, *expected, "{annotations:?} container {i}");
        }
        assert_eq!(out.warnings, *warnings, "{annotations:?}");
        if injected.iter().all(|i| !i) {
            assert_eq!(out.decision, Decision::NoContainers);
            assert!(pod["spec"].get("volumes").is_none(), "no unused volume");
        }
    }
}

#[test]
fn empty_include_list_injects_nothing_and_says_so() {
    let mut input = simple_pod();
    input["metadata"]["annotations"] = json!({"eks.amazonaws.com/include-containers": " , "});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(pod, input);
    assert_eq!(out.decision, Decision::NoContainers);
    assert_eq!(
        out.warnings,
        ["eks.amazonaws.com/include-containers is empty: no container injected"]
    );
}

#[test]
fn mount_conflicts_are_not_duplicated() {
    let input = json!({"spec": {"containers": [
        {"name": "other-path", "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/elsewhere"}]},
        {"name": "other-name", "volumeMounts": [{"name": "mine", "mountPath": format!("{MOUNT}/")}]},
    ]}});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    for i in 0..2 {
        assert_eq!(
            pod["spec"]["containers"][i]["volumeMounts"],
            input["spec"]["containers"][i]["volumeMounts"]
        );
        assert_eq!(pod["spec"]["containers"][i]["env"], json!(role_env(TOKEN)));
    }
    assert_eq!(
        out.warnings,
        [
            "container other-path already mounts aws-iam-token at /elsewhere: not mounted again"
                .to_owned(),
            format!(
                "container other-name already mounts volume mine at {MOUNT}: token not mounted"
            ),
        ]
    );
}

#[test]
fn foreign_volume_with_our_name_stops_the_mutation() {
    for foreign in [
        json!({"name": "aws-iam-token", "emptyDir": {}}),
        json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"path": "other"}}]}}),
        json!({"name": "aws-iam-token", "projected": {"sources": [{"configMap": {"name": "x"}}]}}),
    ] {
        let input = json!({"spec": {"containers": [{"name": "app"}], "volumes": [foreign]}});
        let (pod, out) = run(&input, &[("role-arn", ARN)]);
        assert_eq!(pod, input);
        assert_eq!(out.decision, Decision::VolumeConflict);
        assert!(
            out.warnings[0].contains("not a service-account token"),
            "{:?}",
            out.warnings
        );
    }
}

#[test]
fn existing_token_volume_is_reused_and_audience_drift_reported() {
    let input =
        json!({"spec": {"containers": [{"name": "app"}], "volumes": [volume("other", 3600)]}});
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(pod["spec"]["volumes"], json!([volume("other", 3600)]));
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([mount()])
    );
    assert!(
        out.warnings[0].contains("audience \"other\""),
        "{:?}",
        out.warnings
    );
}

#[test]
fn windows_pods_get_the_windows_token_path() {
    let windows_token = r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token";
    for spec_extra in [
        json!({"nodeSelector": {"kubernetes.io/os": "windows"}}),
        json!({"nodeSelector": {"beta.kubernetes.io/os": "windows"}}),
        json!({"os": {"name": "windows"}}),
    ] {
        let mut input = simple_pod();
        for (k, v) in spec_extra.as_object().unwrap() {
            input["spec"][k] = v.clone();
        }
        let (pod, _) = run(&input, &[("role-arn", ARN)]);
        assert_eq!(
            pod["spec"]["containers"][0]["env"],
            json!(role_env(windows_token))
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"],
            json!([mount()])
        );
    }
}

#[test]
fn token_expiration_precedence_and_floor() {
    let mut input = simple_pod();
    input["metadata"]["annotations"] = json!({"eks.amazonaws.com/token-expiration": "100"});
    let (pod, out) = run(&input, &[("role-arn", ARN), ("token-expiration", "7200")]);
    assert_eq!(pod["spec"]["volumes"][0], volume("sts.amazonaws.com", 600));
    assert_eq!(
        out.warnings,
        ["eks.amazonaws.com/token-expiration=100 on the pod is below the minimum: using 600"]
    );
}

#[test]
fn mutating_twice_changes_nothing_and_reinvocation_injects_new_containers() {
    let input = json!({"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app", "env": []}]}});
    let (once, first) = run(&input, &[("role-arn", ARN), ("region", "eu-west-1")]);
    assert_eq!(first.decision, Decision::Mutated);
    let (twice, second) = run(&once, &[("role-arn", ARN), ("region", "eu-west-1")]);
    assert_eq!(second.decision, Decision::AlreadyMutated);
    assert!(second.patch.0.is_empty());
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    assert_eq!(twice, once);

    // A later webhook adds a sidecar; on reinvocation only the sidecar is injected.
    let mut with_sidecar = once.clone();
    with_sidecar["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late", "image": "x"}));
    let (third, out) = run(&with_sidecar, &[("role-arn", ARN), ("region", "eu-west-1")]);
    assert_eq!(out.decision, Decision::Mutated);
    assert!(
        out.patch
            .0
            .iter()
            .all(|op| op.path().to_string().starts_with("/spec/containers/1/"))
    );
    assert_eq!(
        third["spec"]["containers"][1]["volumeMounts"],
        json!([mount()])
    );
    assert_eq!(
        third["spec"]["containers"][1]["env"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(third["spec"]["volumes"].as_array().unwrap().len(), 1);
}

#[test]
fn unknown_fields_survive() {
    let input = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "futureMeta": {"x": 1}},
        "spec": {
            "futureField": {"nested": [1, 2, {"deep": true}]},
            "initContainers": [{"name": "sidecar", "restartPolicy": "Always", "madeUpField": "kept"}],
            "containers": [{"name": "app", "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}], "madeUpField": 7}],
            "volumes": [{"name": "image", "image": {"reference": "x", "futureOption": 1}}],
        },
        "status": {"phase": "Pending"},
    });
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    // Removing exactly what we added gives back the input, byte for byte.
    let mut stripped = pod.clone();
    for list in ["initContainers", "containers"] {
        for c in stripped["spec"][list].as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            assert!(c.remove("env").is_some() && c.remove("volumeMounts").is_some());
        }
    }
    stripped["spec"]["volumes"].as_array_mut().unwrap().pop();
    assert_eq!(stripped, input);
}

#[test]
fn custom_settings_are_honoured() {
    let cfg = InjectionConfig::new(InjectionSettings {
        annotation_prefix: "irsa.example.com",
        token_audience: "custom",
        token_expiration: 1200,
        token_mount_path: "/aws",
        ..settings()
    })
    .unwrap();
    let sa = SaAnnotations::from_annotations(&cfg, [("irsa.example.com/role-arn", ARN)]).unwrap();
    let (pod, out) = run_with(&simple_pod(), ServiceAccount::Found(Some(&sa)), &cfg);
    assert!(out.warnings.is_empty());
    assert_eq!(pod["spec"]["volumes"][0], volume("custom", 1200));
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "aws-iam-token", "mountPath": "/aws", "readOnly": true}])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"][1]["value"],
        "/aws/token"
    );
    // The EKS prefix means nothing under a custom prefix.
    let mut input = simple_pod();
    input["metadata"]["annotations"] =
        json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
    let (_, out) = run_with(&input, ServiceAccount::Found(Some(&sa)), &cfg);
    assert_eq!(out.decision, Decision::Mutated);
}

#[test]
fn pods_beyond_the_limits_are_allowed_unpatched_with_a_warning() {
    let many: Vec<Value> = (0..=crate::injection::pod::MAX_CONTAINERS)
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    for pod in [
        json!({"spec": {"containers": many}}),
        json!({"spec": {"containers": [{"name": "app"}], "initContainers": many}}),
    ] {
        let (patched, out) = run(&pod, &[("role-arn", ARN)]);
        assert_eq!(out.decision, Decision::TooLarge);
        assert_eq!(patched, pod, "nothing added");
        assert_eq!(
            out.warnings,
            [
                "the pod has more than 256 containers and init containers, beyond what the webhook patches: AWS credentials not injected"
            ]
        );
    }
    // At the limit the pod is patched.
    let at_limit: Vec<Value> = (0..crate::injection::pod::MAX_CONTAINERS)
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    let (_, out) = run(
        &json!({"spec": {"containers": at_limit}}),
        &[("role-arn", ARN)],
    );
    assert_eq!(out.decision, Decision::Mutated);
}

#[test]
fn long_skip_and_include_lists_are_sets_and_their_warnings_stay_short() {
    let containers: Vec<Value> = (0..200).map(|i| json!({"name": format!("c{i}")})).collect();
    // 100 000 names: the even containers, then many that match nothing.
    let listed: Vec<String> = (0..200)
        .step_by(2)
        .map(|i| format!("c{i}"))
        .chain((0..99_900).map(|i| format!("ghost{i}")))
        .collect();
    let pod = json!({
        "metadata": {"annotations": {"eks.amazonaws.com/skip-containers": listed.join(",")}},
        "spec": {"containers": containers},
    });
    let (patched, out) = run(&pod, &[("role-arn", ARN)]);
    assert_eq!(out.decision, Decision::Mutated);
    let injected = |i: usize| patched["spec"]["containers"][i].get("env").is_some();
    assert!(
        (0..200).all(|i| injected(i) == (i % 2 == 1)),
        "odd ones only"
    );
    assert_eq!(
        out.warnings,
        [
            "eks.amazonaws.com/skip-containers names no container of this pod: ghost0, ghost1, ghost2, ghost3, ghost4, ghost5, ghost6, ghost7, ghost8, ghost9 and 99890 more"
        ]
    );
}

#[test]
fn a_role_arn_longer_than_sts_takes_is_not_injected() {
    let long = format!("arn:aws:iam::111122223333:role/{}", "p/".repeat(1100));
    let (patched, out) = run(&simple_pod(), &[("role-arn", &long)]);
    assert_eq!(out.decision, Decision::NoRole);
    assert_eq!(patched, simple_pod());
    assert_eq!(
        out.warnings,
        [format!(
            "eks.amazonaws.com/role-arn on ServiceAccount ns/app is {} characters long, more than an ARN can be (2048): AWS credentials not injected",
            long.len()
        )]
    );
}

/// The reference webhook is the contract for how annotation values are read.
#[test]
fn annotation_values_are_read_like_the_reference_webhook() {
    // sts-regional-endpoints: Go's strconv.ParseBool.
    for (value, regional, warned) in [
        ("1", true, false),
        ("t", true, false),
        ("T", true, false),
        ("TRUE", true, false),
        ("True", true, false),
        ("0", false, false),
        ("f", false, false),
        ("F", false, false),
        ("FALSE", false, false),
        ("False", false, false),
        ("yes", false, true),
        ("tRUE", false, true),
    ] {
        let (pod, out) = run(
            &simple_pod(),
            &[("role-arn", ARN), ("sts-regional-endpoints", value)],
        );
        let env = &pod["spec"]["containers"][0]["env"];
        assert_eq!(
            env[0]["name"] == "AWS_STS_REGIONAL_ENDPOINTS",
            regional,
            "{value}"
        );
        assert_eq!(
            out.warnings.len(),
            usize::from(warned),
            "{value}: {:?}",
            out.warnings
        );
    }

    // An invalid pod token-expiration falls back to the ServiceAccount's, then to the flag.
    let mut input = simple_pod();
    input["metadata"]["annotations"] = json!({"eks.amazonaws.com/token-expiration": "abc"});
    let (pod, out) = run(&input, &[("role-arn", ARN), ("token-expiration", "3600")]);
    assert_eq!(pod["spec"]["volumes"][0], volume("sts.amazonaws.com", 3600));
    assert_eq!(
        out.warnings,
        [
            "eks.amazonaws.com/token-expiration=\"abc\" on the pod is not a whole number of seconds: using 3600"
        ]
    );
    let (pod, out) = run(&input, &[("role-arn", ARN), ("token-expiration", "x")]);
    assert_eq!(
        pod["spec"]["volumes"][0],
        volume("sts.amazonaws.com", 86400)
    );
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);

    // skip-containers is a CSV record: quoted names are unquoted.
    for list in [r#""a",b"#, r#" "a" , "b" "#, r#"a,"b""#] {
        let mut input =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        input["metadata"] = json!({"annotations": {"eks.amazonaws.com/skip-containers": list}});
        let (pod, out) = run(&input, &[("role-arn", ARN)]);
        let injected: Vec<bool> = (0..3)
            .map(|i| pod["spec"]["containers"][i].get("env").is_some())
            .collect();
        assert_eq!(injected, [false, false, true], "{list}");
        assert!(out.warnings.is_empty(), "{list}: {:?}", out.warnings);
    }
}

#[test]
fn unknown_pod_annotations_under_the_prefix_are_named() {
    let mut input = simple_pod();
    input["metadata"]["annotations"] = json!({
        "eks.amazonaws.com/skip-container": "app",
        "eks.amazonaws.com/role-arn": ARN,
        "example.com/skip-container": "app",
    });
    let (pod, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(
        out.decision,
        Decision::Mutated,
        "a typo does not skip anything"
    );
    assert!(pod["spec"]["containers"][0].get("env").is_some());
    assert_eq!(
        out.warnings,
        [
            "annotation eks.amazonaws.com/role-arn is read on ServiceAccounts, not on a pod: it has no effect here",
            "annotation eks.amazonaws.com/skip-container is not one this webhook reads on a pod; did you mean eks.amazonaws.com/skip-containers?",
        ]
    );
    // However many there are, five are named.
    let many: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("eks.amazonaws.com/x{i:04}"), json!("")))
        .collect();
    input["metadata"]["annotations"] = Value::Object(many);
    let (_, out) = run(&input, &[("role-arn", ARN)]);
    assert_eq!(out.warnings.len(), 5, "{:?}", out.warnings);
    assert!(out.warnings[0].starts_with("annotation eks.amazonaws.com/x0000 "));
}

#[test]
fn a_misspelt_service_account_annotation_is_named_in_a_warning() {
    let cfg = InjectionConfig::default();
    let sa = SaAnnotations::from_annotations(&cfg, [("eks.amazonaws.com/rolearn", ARN)])
        .expect("kept for its warning");
    assert_eq!(sa.role_arn, None);
    let (pod, out) = run_with(&simple_pod(), ServiceAccount::Found(Some(&sa)), &cfg);
    assert_eq!(out.decision, Decision::NoRole);
    assert_eq!(pod, simple_pod());
    assert_eq!(
        out.warnings,
        [
            "ServiceAccount ns/app: annotation eks.amazonaws.com/rolearn is not one this webhook reads on a ServiceAccount; did you mean eks.amazonaws.com/role-arn?"
        ]
    );
    // Beside a role, the misspelt key is still named, and the role injected.
    let sa = SaAnnotations::from_annotations(
        &cfg,
        [
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/audiance", "x"),
        ],
    )
    .unwrap();
    let (_, out) = run_with(&simple_pod(), ServiceAccount::Found(Some(&sa)), &cfg);
    assert_eq!(out.decision, Decision::Mutated);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].ends_with("did you mean eks.amazonaws.com/audience?"));
    // Unrelated annotations are not kept at all.
    assert_eq!(
        SaAnnotations::from_annotations(&cfg, [("example.com/x", "y")]),
        None
    );
}

#[test]
fn opt_in_session_name_and_sts_endpoint_follow_the_reference_variables() {
    let cfg = InjectionConfig::new(InjectionSettings {
        sts_endpoint: Some("https://sts.internal"),
        role_session_name: true,
        ..settings()
    })
    .unwrap();
    let annotated = sa(&[("role-arn", ARN)]);
    let mut named = simple_pod();
    named["metadata"]["name"] = json!("web-1");
    let (pod, out) = run_with(&named, ServiceAccount::Found(Some(&annotated)), &cfg);
    assert_eq!(out.decision, Decision::Mutated);
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_SESSION_NAME",
            "AWS_ENDPOINT_URL_STS"
        ]
    );
    assert_eq!(
        env[2]["valueFrom"],
        json!({"fieldRef": {"fieldPath": "metadata.name"}})
    );
    assert_eq!(env[3]["value"], "https://sts.internal");
    // Idempotent, and a container's own values are kept.
    let (again, out) = run_with(&pod, ServiceAccount::Found(Some(&annotated)), &cfg);
    assert_eq!(out.decision, Decision::AlreadyMutated);
    assert_eq!(again, pod);
    let mut own = named.clone();
    own["spec"]["containers"][0]["env"] = json!([
        {"name": "AWS_ROLE_SESSION_NAME", "value": "mine"},
        {"name": "AWS_ENDPOINT_URL_STS", "value": "http://mine"},
    ]);
    let (pod, _) = run_with(&own, ServiceAccount::Found(Some(&annotated)), &cfg);
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert_eq!(env.len(), 4);
    assert_eq!(env[0]["value"], "mine");
    assert_eq!(env[1]["value"], "http://mine");
    // Off by default: nothing changes for AWS users.
    let (pod, _) = run_with(
        &simple_pod(),
        ServiceAccount::Found(Some(&annotated)),
        &InjectionConfig::default(),
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
