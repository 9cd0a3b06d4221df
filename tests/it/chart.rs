//! The Helm chart (`chart/`) and the manifests rendered from it (`manifests/`).
//!
//! - offline: `helm lint --strict` and `helm template` with helm 3 and helm 4 (identical
//!   objects), kubeconform `-strict` against the Kubernetes 1.37 JSON schemas, the rendered
//!   objects against the webhook's contract, `manifests/` up to date;
//! - on a real kube-apiserver (tests/cluster): a server-side dry-run of every object of every
//!   value set in namespaces that enforce the `restricted` Pod Security Standard, pods made from
//!   the pod templates judged by PodSecurity admission, and a real `helm install` whose webhook
//!   configuration, RBAC and ServiceAccount then mutate a pod, followed by `helm upgrade` (helm 3
//!   and helm 4) that must keep the `caBundle` the webhook wrote, and `helm uninstall`;
//! - `helm test` (helm 3 and 4) with the test pod's command run here as its ServiceAccount, in
//!   place of a kubelet: it fails with the cause while no webhook answers, then passes and
//!   cleans up.
//!
//! helm, kubeconform and the schemas come from scripts/install-tools.sh (cached), the control
//! plane from tests/cluster/install.sh.

use crate::support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, ClusterOptions};
use support::e2e::{ARN, create_pod, has_token_volume, pod};
use support::helm::{self, Helm, all, describe, find, names, objects};

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(ClusterOptions::default()))
}

/// The value sets every offline and dry-run check covers: defaults and `chart/ci/*-values.yaml`.
const VALUE_SETS: &[&str] = &[
    "default",
    "cert-manager",
    "tailscale",
    "tailscale-standby",
    "oidc-bridge",
    "ingress",
    "fail",
];

fn values_files(set: &str) -> Vec<std::path::PathBuf> {
    match set {
        "default" => vec![],
        other => vec![helm::values(other)],
    }
}

/// Renders value set `set` for `release` in `namespace` with helm 3.
fn render(release: &str, namespace: &str, set: &str, extra: &[&str]) -> Vec<Value> {
    let files = values_files(set);
    let files: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let yaml = Helm::V3
        .template(release, namespace, &files, extra)
        .unwrap_or_else(|e| panic!("{e}"));
    objects(&yaml)
}

fn defaults() -> Vec<Value> {
    render("irsa-webhook", "irsa-system", "default", &[])
}

/// Asserts two object sets are equal whatever their order (helm 3 and 4 order CRD kinds
/// differently), showing only the first object that differs.
fn assert_same(left: &[Value], right: &[Value], what: &str) {
    let key = |o: &Value| {
        (
            o["kind"].as_str().unwrap_or_default().to_owned(),
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let mut l: Vec<&Value> = left.iter().collect();
    let mut r: Vec<&Value> = right.iter().collect();
    l.sort_by_key(|o| key(o));
    r.sort_by_key(|o| key(o));
    let ln: Vec<String> = l.iter().map(|o| describe(o)).collect();
    let rn: Vec<String> = r.iter().map(|o| describe(o)).collect();
    assert_eq!(ln, rn, "{what}: different objects");
    for (a, b) in l.iter().zip(&r) {
        assert!(
            a == b,
            "{what}: {} differs:\n{}\n---\n{}",
            describe(a),
            serde_json::to_string_pretty(a).unwrap(),
            serde_json::to_string_pretty(b).unwrap()
        );
    }
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {}", describe(workload)))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name} in container {}", container["name"]))
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `object` is a `helm test` hook (`templates/tests/`).
fn is_test_hook(object: &Value) -> bool {
    object["metadata"]["annotations"]["helm.sh/hook"] == "test"
}

/// The objects a release holds: `helm get manifest` leaves hooks out, `helm template` does not.
fn without_hooks(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Offline
// ---------------------------------------------------------------------------------------------

#[test]
fn lint_passes_strictly_with_helm_3_and_4_for_every_value_set() {
    for helm in Helm::ALL {
        for set in VALUE_SETS {
            let files = values_files(set);
            let files: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
            let out = helm
                .lint(&files)
                .unwrap_or_else(|e| panic!("{helm:?} lint of {set}: {e}"));
            assert!(out.contains("0 chart(s) failed"), "{helm:?} {set}: {out}");
        }
    }
}

#[test]
fn bad_values_are_refused_with_a_message_that_names_the_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["certificates.mode=vault"], "certificates.mode"),
        (&["webhook.failurePolicy=Sometimes"], "failurePolicy"),
        (&["tokenExpiration=60"], "tokenExpiration"),
        (&["replicaCount=0"], "replicaCount"),
        (&["logFormat=xml"], "logFormat"),
        // A typo is an error, not a silently ignored key.
        (&["webhook.failurePolicyy=Fail"], "failurePolicyy"),
        (
            &["certificates.mode=secret", "certificates.secret.caBundle=x"],
            "certificates.secret.name is required",
        ),
        (
            &["certificates.mode=secret", "certificates.secret.name=x"],
            "certificates.secret.caBundle is required",
        ),
        (
            &["discovery.enabled=true"],
            "discovery.issuerUrl is required",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=http://oidc.example.com",
            ],
            "discovery.issuerUrl",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.example.com",
                "discovery.tailscale.enabled=true",
            ],
            "Funnel at https://<hostname>.<tailnet>.ts.net",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.tail0123ab.ts.net",
                "discovery.tailscale.enabled=true",
                "discovery.tailscale.hostname=other",
            ],
            "does not match the issuer host",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.tail0123ab.ts.net",
                "discovery.tailscale.enabled=true",
            ],
            "discovery.tailscale.tag is required",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.tail0123ab.ts.net",
                "discovery.tailscale.enabled=true",
                "discovery.tailscale.tag=tag:oidc",
            ],
            "discovery.tailscale.oauthSecret.name is required",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.tail0123ab.ts.net",
                "discovery.tailscale.enabled=true",
                "discovery.tailscale.tag=tag:oidc",
                "discovery.tailscale.oauthSecret.name=ts",
                "discovery.ingress.enabled=true",
            ],
            "choose one",
        ),
        // A value of a feature that is off names the switch.
        (
            &["discovery.issuerUrl=https://oidc.example.com"],
            "discovery.issuerUrl is set but the discovery server is off: set discovery.enabled=true",
        ),
        (
            &["discovery.tailscale.hostname=oidc"],
            "discovery.tailscale.hostname is set but Tailscale is off: set discovery.tailscale.enabled=true",
        ),
        (
            &[
                "discovery.enabled=true",
                "discovery.issuerUrl=https://oidc.example.com",
                "discovery.ingress.className=nginx",
            ],
            "discovery.ingress.className is set but the Ingress is off: set discovery.ingress.enabled=true",
        ),
        // The short forms and the long ones must agree.
        (
            &[
                "issuerUrl=https://a.tail0123ab.ts.net",
                "discovery.issuerUrl=https://b.tail0123ab.ts.net",
            ],
            "issuerUrl \"https://a.tail0123ab.ts.net\" and discovery.issuerUrl \"https://b.tail0123ab.ts.net\" differ",
        ),
        (&["issuerUrl=http://oidc.example.com"], "issuerUrl"),
        (&["tailscale.hostnme=x"], "hostnme"),
        (&["tests.retryFor=soon"], "retryFor"),
        (&["tests.activeDeadlineSeconds=0"], "activeDeadlineSeconds"),
    ];
    for helm in Helm::ALL {
        for (set, expected) in cases {
            let error = helm
                .template("irsa-webhook", "irsa-system", &[], set)
                .expect_err(&format!("{helm:?} accepted {set:?}"));
            assert!(
                error.contains(expected),
                "{helm:?} {set:?}: expected {expected:?} in:\n{error}"
            );
        }
    }
}

#[test]
fn every_value_set_renders_schema_valid_objects_identically_with_helm_3_and_4() {
    for set in VALUE_SETS {
        let files = values_files(set);
        let files: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let v3 = Helm::V3
            .template("irsa-webhook", "irsa-system", &files, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let v4 = Helm::V4
            .template("irsa-webhook", "irsa-system", &files, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_same(
            &objects(&v3),
            &objects(&v4),
            &format!("{set}: helm 3 vs helm 4"),
        );

        let rendered = objects(&v3);
        let crds = rendered
            .iter()
            .filter(|o| helm::CRD_KINDS.contains(&o["kind"].as_str().unwrap()))
            .count();
        let summary = helm::kubeconform(&v3).unwrap_or_else(|e| panic!("{set}: {e}"));
        let expected = format!(
            "{} resources found parsing stdin - Valid: {}, Invalid: 0, Errors: 0, Skipped: {crds}",
            rendered.len(),
            rendered.len() - crds
        );
        assert!(summary.contains(&expected), "{set}: {summary}");
    }
}

#[test]
fn kubeconform_catches_what_it_is_here_for() {
    // A misspelt field, a wrong type and a duplicated key: each must fail, or a green
    // kubeconform run above would prove nothing.
    let good = Helm::V3
        .template("irsa-webhook", "irsa-system", &[], &[])
        .unwrap();
    for (from, to) in [
        (
            "      automountServiceAccountToken: true\n",
            "      automountServiceAccountToken: true\n      automountServiceAcountToken: true\n",
        ),
        ("runAsUser: 65532", "runAsUser: \"65532\""),
        (
            "    failurePolicy: Ignore\n",
            "    failurePolicy: Ignore\n    failurePolicy: Fail\n",
        ),
    ] {
        assert!(good.contains(from), "{from:?} not in the rendered chart");
        let bad = good.replacen(from, to, 1);
        let error = helm::kubeconform(&bad).expect_err(&format!("accepted {to:?}"));
        assert!(
            error.contains("Invalid: 1") || error.contains("Errors: 1"),
            "{error}"
        );
    }
}

#[test]
fn manifests_are_rendered_from_the_chart_and_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .arg(helm::repo().join("scripts/render-manifests.sh"))
        .arg(dir.path())
        .env("HELM", helm::tools_dir().join("helm"))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/render-manifests.sh failed");
    let fresh = std::fs::read_to_string(dir.path().join("irsa-webhook.yaml")).unwrap();
    let committed =
        std::fs::read_to_string(helm::repo().join("manifests/irsa-webhook.yaml")).unwrap();
    assert!(
        fresh == committed,
        "manifests/irsa-webhook.yaml is out of date with chart/: run scripts/render-manifests.sh"
    );
    let summary = helm::kubeconform(&committed).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.contains("Invalid: 0, Errors: 0"), "{summary}");
    let objects = objects(&committed);
    assert_eq!(
        objects[0],
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "irsa-system", "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"}}})
    );
    assert_same(
        &objects[1..],
        &render(
            "irsa-webhook",
            "irsa-system",
            "default",
            &["tests.enabled=false"],
        ),
        "manifests/ vs the chart's defaults without `helm test`",
    );
    assert!(!objects.iter().any(is_test_hook));
}

#[test]
fn webhook_configuration_follows_the_contract() {
    let rendered = defaults();
    let config = find(&rendered, "MutatingWebhookConfiguration", "irsa-webhook");
    let webhooks = config["webhooks"].as_array().unwrap();
    // The second entry is `helm test`'s (see helm_test_hooks_...).
    let names: Vec<&str> = webhooks
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pods.irsa-webhook.io", "probe.irsa-webhook.io"]);
    let w = &webhooks[0];
    assert_eq!(
        w["rules"],
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
    );
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["timeoutSeconds"], 5);
    assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        w["objectSelector"],
        json!({"matchExpressions": [{"key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "NotIn", "values": ["true"]}]})
    );
    assert_eq!(
        w["namespaceSelector"],
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["irsa-system", "kube-system"]}]})
    );
    // Self-managed certificates: the webhook writes the caBundle, the chart never renders one
    // (`helm template` cannot look the live one up).
    assert_eq!(
        w["clientConfig"],
        json!({"service": {"name": "irsa-webhook", "namespace": "irsa-system", "path": "/mutate", "port": 443}})
    );

    // Every knob moves what it should.
    let tuned = render(
        "irsa-webhook",
        "irsa-system",
        "default",
        &[
            "annotationPrefix=irsa.example.com",
            "webhook.failurePolicy=Fail",
            "webhook.timeoutSeconds=10",
            "webhook.excludeNamespaces={kube-system,monitoring}",
        ],
    );
    let w = &find(&tuned, "MutatingWebhookConfiguration", "irsa-webhook")["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["timeoutSeconds"], 10);
    assert_eq!(
        w["objectSelector"]["matchExpressions"][0]["key"],
        "irsa.example.com/skip-pod-identity-webhook"
    );
    assert_eq!(
        w["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["irsa-system", "kube-system", "monitoring"])
    );
    let replaced = render(
        "irsa-webhook",
        "irsa-system",
        "default",
        &["webhook.namespaceSelector.matchLabels.irsa=enabled"],
    );
    assert_eq!(
        find(&replaced, "MutatingWebhookConfiguration", "irsa-webhook")["webhooks"][0]["namespaceSelector"],
        json!({"matchLabels": {"irsa": "enabled"}})
    );
}

#[test]
fn webhook_deployment_is_hardened_and_passes_every_setting_as_an_existing_env_var() {
    let rendered = defaults();
    let deployment = find(&rendered, "Deployment", "irsa-webhook");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(spec["automountServiceAccountToken"], true);
    assert_eq!(spec["serviceAccountName"], "irsa-webhook");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(deployment, "webhook");
    assert_eq!(c["image"], "ghcr.io/irsa-webhook/irsa-webhook:0.1.0");
    assert_eq!(c["args"], json!(["serve"]));
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/livez", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "https", "containerPort": 8443, "protocol": "TCP"},
               {"name": "metrics", "containerPort": 9999, "protocol": "TCP"}])
    );
    let service = find(&rendered, "Service", "irsa-webhook");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}])
    );
    let pdb = find(&rendered, "PodDisruptionBudget", "irsa-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let spread = spec["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(
        spread
            .iter()
            .map(|t| t["topologyKey"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    assert!(spec.get("priorityClassName").is_none());
    // One replica: no PodDisruptionBudget (minAvailable 1 of 1 would block every drain); an
    // explicit empty spread list turns spreading off.
    let single = render(
        "irsa-webhook",
        "irsa-system",
        "default",
        &["replicaCount=1"],
    );
    assert!(all(&single, "PodDisruptionBudget").is_empty());
    let dir = tempfile::tempdir().unwrap();
    let unspread = dir.path().join("values.yaml");
    std::fs::write(&unspread, "topologySpreadConstraints: []\n").unwrap();
    let unspread = objects(
        &Helm::V3
            .template("irsa-webhook", "irsa-system", &[&unspread], &[])
            .unwrap(),
    );
    assert_eq!(
        find(&unspread, "Deployment", "irsa-webhook")["spec"]["template"]["spec"]["topologySpreadConstraints"],
        json!([])
    );

    // Self-managed certificates by default, for the Service's names.
    assert_eq!(env(c, "IRSA_CERT_SECRET")["value"], "irsa-webhook-tls");
    assert_eq!(
        env(c, "IRSA_CERT_SECRET_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env(c, "IRSA_CERT_DNS")["value"],
        "irsa-webhook,irsa-webhook.irsa-system,irsa-webhook.irsa-system.svc,irsa-webhook.irsa-system.svc.cluster.local"
    );
    assert_eq!(env(c, "IRSA_WEBHOOK_CONFIG")["value"], "irsa-webhook");

    // Every injection setting reaches the process, by an env var `serve` really reads.
    let tuned = render(
        "irsa-webhook",
        "irsa-system",
        "fail",
        &[
            "annotationPrefix=irsa.example.com",
            "tokenAudience=sts.example",
            "tokenMountPath=/var/run/secrets/irsa",
            "logFormat=text",
            "logLevel=debug",
        ],
    );
    let deployment = find(&tuned, "Deployment", "irsa-webhook");
    let c = container(deployment, "webhook");
    for (name, value) in [
        ("IRSA_ANNOTATION_PREFIX", "irsa.example.com"),
        ("IRSA_TOKEN_AUDIENCE", "sts.example"),
        ("IRSA_TOKEN_EXPIRATION", "3600"),
        ("IRSA_TOKEN_MOUNT_PATH", "/var/run/secrets/irsa"),
        ("IRSA_AWS_DEFAULT_REGION", "eu-west-1"),
        ("IRSA_STS_REGIONAL_ENDPOINT", "true"),
        ("IRSA_LOG_FORMAT", "text"),
        ("IRSA_LOG_LEVEL", "debug"),
        ("IRSA_TLS_CERT", "/etc/irsa-webhook/tls/tls.crt"),
        ("IRSA_TLS_KEY", "/etc/irsa-webhook/tls/tls.key"),
    ] {
        assert_eq!(env(c, name)["value"], value, "{name}");
    }
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    let serve_env: Vec<String> = helm::flags("serve")
        .into_iter()
        .filter_map(|f| f.env)
        .collect();
    for set in VALUE_SETS {
        let rendered = render("irsa-webhook", "irsa-system", set, &[]);
        for name in env_names(container(
            find(&rendered, "Deployment", "irsa-webhook"),
            "webhook",
        )) {
            assert!(
                serve_env.contains(&name),
                "{set}: {name} is not an env var of `irsa-webhook serve` ({serve_env:?})"
            );
        }
    }
    let discovery_env: Vec<String> = helm::flags("discovery")
        .into_iter()
        .filter_map(|f| f.env)
        .collect();
    for set in ["tailscale", "ingress"] {
        let rendered = render("irsa-webhook", "irsa-system", set, &[]);
        for name in env_names(container(
            find(&rendered, "Deployment", "irsa-webhook-discovery"),
            "discovery",
        )) {
            assert!(
                discovery_env.contains(&name),
                "{set}: {name} is not an env var of `irsa-webhook discovery`"
            );
        }
    }
}

#[test]
fn rbac_grants_only_what_each_mode_needs() {
    // The webhook's own; `helm test`'s are checked in helm_test_hooks_...
    let rendered = without_hooks(&defaults());
    let rules = |kind: &str, name: &str| find(&rendered, kind, name)["rules"].clone();
    assert_eq!(
        rules("ClusterRole", "irsa-webhook"),
        json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch"]}])
    );
    assert_eq!(
        rules("Role", "irsa-webhook-certificate"),
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["irsa-webhook-tls"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ])
    );
    assert_eq!(
        rules("ClusterRole", "irsa-webhook-webhook-config"),
        json!([{"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": ["irsa-webhook"], "verbs": ["get", "update", "patch"]}])
    );
    // Every binding names the chart's ServiceAccount and an existing role.
    for binding in all(&rendered, "ClusterRoleBinding")
        .into_iter()
        .chain(all(&rendered, "RoleBinding"))
    {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "irsa-webhook", "namespace": "irsa-system"}])
        );
        find(
            &rendered,
            binding["roleRef"]["kind"].as_str().unwrap(),
            binding["roleRef"]["name"].as_str().unwrap(),
        );
    }
    // Certificates from cert-manager or a Secret: no access to Secrets or webhook
    // configurations at all.
    for set in ["cert-manager", "fail"] {
        let rendered = without_hooks(&render("irsa-webhook", "irsa-system", set, &[]));
        assert_eq!(
            all(&rendered, "ClusterRole").len() + all(&rendered, "Role").len(),
            1,
            "{set}: {:?}",
            names(&rendered)
        );
    }
}

/// The label `irsa-webhook doctor --webhook-only` puts on its probe pods.
const PROBE_LABEL: &str = "irsa-webhook.io/doctor-probe";

#[test]
fn helm_test_hooks_are_least_privilege_restricted_and_aim_at_the_release() {
    let (release, ns) = ("hooks", "irsa-test-ns");
    let rendered = render(
        release,
        ns,
        "default",
        &[
            "annotationPrefix=irsa.example.com",
            "tokenAudience=aud.example",
            "image.repository=registry.example/irsa",
            "image.tag=1.2.3",
            "image.pullPolicy=Never",
            "imagePullSecrets[0].name=regcred",
        ],
    );
    let hooks: Vec<&Value> = rendered.iter().filter(|o| is_test_hook(o)).collect();
    assert_eq!(
        names(&hooks.iter().map(|&o| o.clone()).collect::<Vec<_>>()),
        [
            "ServiceAccount/hooks-irsa-webhook-test-probe",
            "ServiceAccount/hooks-irsa-webhook-test",
            "Role/hooks-irsa-webhook-test",
            "RoleBinding/hooks-irsa-webhook-test",
            "Pod/hooks-irsa-webhook-test",
        ]
    );
    // Cleaned up before a rerun and after a pass; RBAC and ServiceAccounts exist before the pod.
    let weight = |o: &Value| -> i32 {
        o["metadata"]["annotations"]["helm.sh/hook-weight"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    for pair in hooks.windows(2) {
        assert!(weight(pair[0]) <= weight(pair[1]), "{}", describe(pair[1]));
    }
    assert!(weight(hooks[2]) > weight(hooks[1]) && weight(hooks[3]) > weight(hooks[2]));
    assert!(weight(hooks[4]) > weight(hooks[3]));
    for hook in &hooks {
        assert_eq!(hook["metadata"]["namespace"], ns, "{}", describe(hook));
        assert_eq!(
            hook["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded",
            "{}",
            describe(hook)
        );
    }

    // The probe ServiceAccount: annotated with the chart's prefix and a role that cannot exist.
    let probe = find(&rendered, "ServiceAccount", "hooks-irsa-webhook-test-probe");
    assert_eq!(
        probe["metadata"]["annotations"]["irsa.example.com/role-arn"],
        "arn:aws:iam::111122223333:role/irsa-webhook-helm-test"
    );
    assert_eq!(probe["automountServiceAccountToken"], false);

    // The runner may create pods (dry runs) and read the probe ServiceAccount, nothing else.
    let role = find(&rendered, "Role", "hooks-irsa-webhook-test");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"],
             "resourceNames": ["hooks-irsa-webhook-test-probe"], "verbs": ["get"]},
        ])
    );
    let binding = find(&rendered, "RoleBinding", "hooks-irsa-webhook-test");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hooks-irsa-webhook-test"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "hooks-irsa-webhook-test", "namespace": ns}])
    );
    assert!(
        !hooks
            .iter()
            .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding")
    );

    // The pod: the webhook's image, pulled the same way, restricted, bounded in time and size,
    // running doctor against the probe ServiceAccount in the release namespace.
    let pod = find(&rendered, "Pod", "hooks-irsa-webhook-test");
    let deployment = find(&rendered, "Deployment", "hooks-irsa-webhook");
    let webhook = container(deployment, "webhook");
    let spec = &pod["spec"];
    let doctor = &spec["containers"][0];
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    assert_eq!(doctor["image"], "registry.example/irsa:1.2.3");
    assert_eq!(doctor["image"], webhook["image"]);
    assert_eq!(doctor["imagePullPolicy"], webhook["imagePullPolicy"]);
    assert_eq!(
        spec["imagePullSecrets"],
        deployment["spec"]["template"]["spec"]["imagePullSecrets"]
    );
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(spec["serviceAccountName"], "hooks-irsa-webhook-test");
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["activeDeadlineSeconds"], 180);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let hardening = &doctor["securityContext"];
    assert_eq!(hardening["allowPrivilegeEscalation"], false);
    assert_eq!(hardening["readOnlyRootFilesystem"], true);
    assert_eq!(hardening["runAsNonRoot"], true);
    assert_eq!(hardening["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(
        doctor["resources"],
        json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}})
    );
    assert_eq!(
        doctor["args"],
        json!([
            "doctor",
            "--webhook-only",
            "--namespace",
            ns,
            "--service-account",
            "hooks-irsa-webhook-test-probe",
            "--retry-for",
            "60s",
            "--probe-image",
            "registry.example/irsa:1.2.3",
        ])
    );
    assert_eq!(
        env(doctor, "IRSA_ANNOTATION_PREFIX")["value"],
        "irsa.example.com"
    );
    assert_eq!(env(doctor, "IRSA_TOKEN_AUDIENCE")["value"], "aud.example");
    // Every flag the pod passes exists.
    let doctor_flags: Vec<String> = helm::flags("doctor").into_iter().map(|f| f.long).collect();
    for arg in doctor["args"].as_array().unwrap() {
        let arg = arg.as_str().unwrap();
        assert!(
            !arg.starts_with("--") || doctor_flags.iter().any(|f| f == arg),
            "doctor has no {arg}"
        );
    }
    for name in env_names(doctor) {
        assert!(
            helm::flags("doctor")
                .iter()
                .any(|f| f.env.as_deref() == Some(name.as_str())),
            "{name} is not an env var of `irsa-webhook doctor`"
        );
    }

    // The release namespace is left out of the main entry; the probe entry sends exactly the
    // doctor's probe pods there, the same way.
    let config = find(
        &rendered,
        "MutatingWebhookConfiguration",
        "hooks-irsa-webhook",
    );
    let (main, entry) = (&config["webhooks"][0], &config["webhooks"][1]);
    assert_eq!(entry["name"], "probe.irsa-webhook.io");
    assert_eq!(
        entry["namespaceSelector"],
        json!({"matchLabels": {"kubernetes.io/metadata.name": ns}})
    );
    assert_eq!(
        entry["objectSelector"],
        json!({"matchLabels": {PROBE_LABEL: "true"}})
    );
    for field in [
        "clientConfig",
        "rules",
        "failurePolicy",
        "reinvocationPolicy",
        "sideEffects",
        "timeoutSeconds",
        "matchPolicy",
        "admissionReviewVersions",
    ] {
        assert_eq!(entry[field], main[field], "{field}");
    }

    // Valid objects for kubeconform, hooks alone.
    let stream: Vec<String> = hooks
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    let summary = helm::kubeconform(&stream.join("\n---\n")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.contains("5 resources found parsing stdin - Valid: 5, Invalid: 0, Errors: 0"),
        "{summary}"
    );

    // Off: no hook, and only the main webhook entry.
    let off = render(release, ns, "default", &["tests.enabled=false"]);
    assert!(!off.iter().any(is_test_hook), "{:?}", names(&off));
    assert!(
        !off.iter()
            .any(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == "test")
    );
    let config = find(&off, "MutatingWebhookConfiguration", "hooks-irsa-webhook");
    assert_eq!(config["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(off.len(), rendered.len() - 5);
}

#[test]
fn cert_manager_objects_fit_together() {
    // Certificate and Issuer cannot be validated without cert-manager's CRDs, so their
    // wiring is checked here.
    let rendered = render("irsa-webhook", "irsa-system", "cert-manager", &[]);
    let certificate = find(&rendered, "Certificate", "irsa-webhook-tls");
    assert_eq!(
        certificate["spec"]["dnsNames"],
        json!([
            "irsa-webhook",
            "irsa-webhook.irsa-system",
            "irsa-webhook.irsa-system.svc",
            "irsa-webhook.irsa-system.svc.cluster.local"
        ])
    );
    assert_eq!(certificate["spec"]["secretName"], "irsa-webhook-tls");
    assert_eq!(certificate["spec"]["privateKey"]["encoding"], "PKCS8");
    let ca_issuer = find(
        &rendered,
        "Issuer",
        certificate["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    let ca = find(&rendered, "Certificate", "irsa-webhook-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let root = find(
        &rendered,
        "Issuer",
        ca["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    assert_eq!(root["spec"]["selfSigned"], json!({}));

    let config = find(&rendered, "MutatingWebhookConfiguration", "irsa-webhook");
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "irsa-system/irsa-webhook-tls"
    );
    let deployment = find(&rendered, "Deployment", "irsa-webhook");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        spec["volumes"][0]["secret"]["secretName"],
        "irsa-webhook-tls"
    );
    let c = container(deployment, "webhook");
    // A directory mount without subPath: renewals arrive by the kubelet's ..data swap.
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "tls", "mountPath": "/etc/irsa-webhook/tls", "readOnly": true}])
    );
    assert_eq!(
        env(c, "IRSA_TLS_CERT")["value"],
        "/etc/irsa-webhook/tls/tls.crt"
    );
    assert!(!env_names(c).contains(&"IRSA_CERT_SECRET".to_owned()));

    // An issuer of your own replaces the chart's CA chain.
    let own = render(
        "irsa-webhook",
        "irsa-system",
        "cert-manager",
        &[
            "certificates.certManager.issuerRef.name=corp-ca",
            "certificates.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    assert_eq!(all(&own, "Issuer").len(), 0);
    assert_eq!(
        find(&own, "Certificate", "irsa-webhook-tls")["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );

    // ServiceMonitors scrape a metrics-only Service; the admission Service never has the port.
    let monitor = find(&rendered, "ServiceMonitor", "irsa-webhook");
    let metrics = find(&rendered, "Service", "irsa-webhook-metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&metrics["metadata"]["labels"][k], v, "{k}");
    }
    assert_eq!(metrics["spec"]["ports"][0]["port"], 9999);
}

#[test]
fn secret_mode_uses_the_given_certificate_and_ca() {
    let rendered = render("irsa-webhook", "irsa-system", "fail", &[]);
    let w = &find(&rendered, "MutatingWebhookConfiguration", "irsa-webhook")["webhooks"][0];
    let ca = base64::engine::general_purpose::STANDARD
        .decode(w["clientConfig"]["caBundle"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8(ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(w["failurePolicy"], "Fail");
    let deployment = find(&rendered, "Deployment", "irsa-webhook");
    let webhook = container(deployment, "webhook");
    for (name, value) in [
        ("IRSA_COMPOSE_ROLE_ARN", "true"),
        ("IRSA_AWS_ACCOUNT_ID", "111122223333"),
        ("IRSA_AWS_PARTITION", "aws-us-gov"),
    ] {
        assert_eq!(env(webhook, name)["value"], value, "{name}");
    }
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "irsa-webhook-serving"
    );
    // Base64 given as such is kept as it is.
    let b64 = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\nx\n");
    let rendered = render(
        "irsa-webhook",
        "irsa-system",
        "fail",
        &[&format!("certificates.secret.caBundle={b64}")],
    );
    assert_eq!(
        find(&rendered, "MutatingWebhookConfiguration", "irsa-webhook")["webhooks"][0]["clientConfig"]
            ["caBundle"],
        b64
    );
}

#[test]
fn discovery_with_tailscale_publishes_only_the_public_port_through_funnel() {
    let rendered = render(
        "irsa-webhook",
        "irsa-system",
        "tailscale",
        &["discovery.replicaCount=3"],
    );
    let deployment = find(&rendered, "Deployment", "irsa-webhook-discovery");
    // One tailnet node per state Secret, whatever replicaCount says.
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let discovery = container(deployment, "discovery");
    assert_eq!(
        env(discovery, "IRSA_ISSUER_URL")["value"],
        "https://irsa-oidc.tail0123ab.ts.net"
    );
    let ts = container(deployment, "tailscale");
    assert_eq!(ts["image"], "tailscale/tailscale:v1.104.5");
    for (name, value) in [
        ("TS_USERSPACE", "true"),
        ("TS_KUBE_SECRET", "irsa-webhook-discovery-tailscale"),
        ("TS_AUTH_ONCE", "true"),
        ("TS_HOSTNAME", "irsa-oidc"),
        ("TS_EXTRA_ARGS", "--advertise-tags=tag:irsa-oidc"),
        ("TS_SERVE_CONFIG", "/etc/tailscale/serve.json"),
    ] {
        assert_eq!(env(ts, name)["value"], value, "{name}");
    }
    for (name, key) in [
        ("TS_CLIENT_ID", "TS_API_CLIENT_ID"),
        ("TS_CLIENT_SECRET", "TS_API_CLIENT_SECRET"),
    ] {
        assert_eq!(
            env(ts, name)["valueFrom"]["secretKeyRef"],
            json!({"name": "tailscale-oauth", "key": key})
        );
    }
    // Userspace networking: no capability added, same hardening as the discovery container.
    assert_eq!(ts["securityContext"], discovery["securityContext"]);

    let serve = find(&rendered, "ConfigMap", "irsa-webhook-discovery-tailscale");
    let serve: Value = serde_json::from_str(serve["data"]["serve.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        serve,
        json!({
            "TCP": {"443": {"HTTPS": true}},
            "Web": {"${TS_CERT_DOMAIN}:443": {"Handlers": {"/": {"Proxy": "http://127.0.0.1:8080"}}}},
            "AllowFunnel": {"${TS_CERT_DOMAIN}:443": true},
        })
    );

    // The state Secret, and only it, may be read and written; the issuer documents may be read.
    assert_eq!(
        find(&rendered, "Role", "irsa-webhook-discovery-tailscale")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["irsa-webhook-discovery-tailscale"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ])
    );
    assert_eq!(
        find(&rendered, "ClusterRoleBinding", "irsa-webhook-discovery")["roleRef"]["name"],
        "system:service-account-issuer-discovery"
    );
    // The discovery Service carries the public port only.
    assert_eq!(
        find(&rendered, "Service", "irsa-webhook-discovery")["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    );
}

/// With a standby, two replicas elect a leader through one Lease and only the leader's
/// Tailscale node runs: the wrapper the chart renders is run here with a stand-in node.
#[test]
fn discovery_with_a_tailscale_standby_runs_the_node_only_on_the_leader() {
    let rendered = render("irsa-webhook", "irsa-system", "tailscale-standby", &[]);
    let deployment = find(&rendered, "Deployment", "irsa-webhook-discovery");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let discovery = container(deployment, "discovery");
    for (name, value) in [
        ("IRSA_LEADER_ELECT", "true"),
        ("IRSA_LEASE_NAME", "irsa-webhook-discovery"),
        ("IRSA_LEASE_NAMESPACE", "irsa-system"),
        ("IRSA_LEASE_DURATION", "10s"),
        ("IRSA_LEADER_FILE", "/run/irsa-leader/leader"),
    ] {
        assert_eq!(env(discovery, name)["value"], value, "{name}");
    }
    assert_eq!(
        find(&rendered, "PodDisruptionBudget", "irsa-webhook-discovery")["spec"]["minAvailable"],
        1
    );
    let rules = &find(&rendered, "Role", "irsa-webhook-discovery-tailscale")["rules"];
    assert!(
        rules.as_array().unwrap().contains(&json!({"apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"], "resourceNames": ["irsa-webhook-discovery"], "verbs": ["get", "update"]})),
        "{rules}"
    );
    let ts = container(deployment, "tailscale");
    assert_eq!(ts["command"], json!(["/bin/sh", "-c"]));
    let script = ts["args"][0].as_str().unwrap();

    // The wrapper, with a stand-in for containerboot that records that it runs.
    let dir = tempfile::tempdir().unwrap();
    let (leader, running) = (dir.path().join("leader"), dir.path().join("running"));
    let boot = dir.path().join("containerboot");
    std::fs::write(
        &boot,
        format!(
            "#!/bin/sh\ntouch {0}\ntrap 'rm -f {0}; exit 0' TERM\nwhile :; do sleep 0.1; done\n",
            running.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&boot, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut wrapper = std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .env("IRSA_LEADER_FILE", &leader)
        .env("CONTAINERBOOT", &boot)
        .spawn()
        .unwrap();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!running.exists(), "a standby runs no node");
    std::fs::write(&leader, "replica-a").unwrap();
    wait("the node to start on the leader", &|| running.exists());
    std::fs::remove_file(&leader).unwrap();
    wait("the node to stop when leadership ends", &|| {
        !running.exists()
    });
    let status = wrapper.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "the container restarts and waits again"
    );
}

/// The OIDC bridge's (meigma/k8s-aws-oidc) exact `--set` values render what the long form renders.
#[test]
fn oidc_bridge_values_turn_on_discovery_with_tailscale_like_the_long_form() {
    let short = render("irsa-webhook", "irsa-system", "oidc-bridge", &[]);
    let long = render("irsa-webhook", "irsa-system", "tailscale", &[]);
    assert_same(
        &short,
        &long,
        "the OIDC bridge's short values against the long form",
    );
    let set = [
        "issuerUrl=https://irsa-oidc.tail0123ab.ts.net",
        "tailscale.hostname=irsa-oidc",
        "tailscale.tag=tag:irsa-oidc",
        "tailscale.oauthSecret.name=tailscale-oauth",
    ];
    for helm in Helm::ALL {
        let yaml = helm
            .template("oidc-bridge", "irsa-system", &[], &set)
            .unwrap_or_else(|e| panic!("{helm:?}: {e}"));
        let rendered = objects(&yaml);
        let deployment = find(
            &rendered,
            "Deployment",
            "oidc-bridge-irsa-webhook-discovery",
        );
        assert_eq!(
            env(container(deployment, "tailscale"), "TS_HOSTNAME")["value"],
            "irsa-oidc"
        );
    }
}

#[test]
fn discovery_with_ingress_routes_exactly_the_two_documents() {
    let rendered = render("irsa-webhook", "irsa-system", "ingress", &[]);
    let deployment = find(&rendered, "Deployment", "irsa-webhook-discovery");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let ingress = find(&rendered, "Ingress", "irsa-webhook-discovery");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["spec"]["tls"],
        json!([{"hosts": ["oidc.example.com"], "secretName": "oidc-example-com-tls"}])
    );
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "oidc.example.com");
    let backend = json!({"service": {"name": "irsa-webhook-discovery", "port": {"name": "http"}}});
    assert_eq!(
        rule["http"]["paths"],
        json!([
            {"path": "/clusters/prod/.well-known/openid-configuration", "pathType": "Exact", "backend": backend},
            {"path": "/clusters/prod/openid/v1/jwks", "pathType": "Exact", "backend": backend},
        ])
    );
    assert_eq!(
        find(&rendered, "Service", "irsa-webhook-discovery")["spec"]["ports"][0]["targetPort"],
        "http"
    );
    assert_eq!(
        find(&rendered, "Service", "irsa-webhook-discovery-metrics")["spec"]["ports"][0]["port"],
        8081
    );
    assert!(
        all(&rendered, "Role")
            .iter()
            .all(|r| !describe(r).contains("tailscale"))
    );
    // Two replicas that a drain never takes down together, spread over zones and nodes.
    let pdb = find(&rendered, "PodDisruptionBudget", "irsa-webhook-discovery");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "discovery"
    );
    let spec = &deployment["spec"]["template"]["spec"];
    let spread = spec["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(spread.len(), 2);
    assert_eq!(
        spread[1]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "discovery"
    );
    let container = &spec["containers"][0];
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!names.contains(&"IRSA_EXPORT_S3") && !names.contains(&"IRSA_PUBLIC_CHECK_INTERVAL"));

    // S3 export and the public check, as values.
    let published = render(
        "irsa-webhook",
        "irsa-system",
        "ingress",
        &[
            "discovery.exportS3={s3://issuer-bucket/clusters/prod,s3://backup-bucket}",
            "discovery.s3PathStyle=true",
            "discovery.publicCheck.interval=5m",
            "discovery.publicCheck.required=true",
        ],
    );
    let container = &find(&published, "Deployment", "irsa-webhook-discovery")["spec"]["template"]["spec"]
        ["containers"][0];
    for (name, value) in [
        (
            "IRSA_EXPORT_S3",
            "s3://issuer-bucket/clusters/prod,s3://backup-bucket",
        ),
        ("IRSA_S3_PATH_STYLE", "true"),
        ("IRSA_PUBLIC_CHECK_INTERVAL", "5m"),
        ("IRSA_PUBLIC_CHECK_REQUIRED", "true"),
    ] {
        assert_eq!(env(container, name)["value"], value, "{name}");
    }
    let bad = Helm::V3.template(
        "irsa-webhook",
        "irsa-system",
        &[&helm::values("ingress")],
        &["discovery.exportS3={issuer-bucket}"],
    );
    assert!(
        bad.unwrap_err().contains("exportS3"),
        "an export location without s3:// is refused"
    );
}

// ---------------------------------------------------------------------------------------------
// On a real API server
// ---------------------------------------------------------------------------------------------

/// Creates namespace `name` where PodSecurity enforces, warns about and audits `restricted`.
async fn restricted_namespace(client: &kube::Client, name: &str) {
    create_namespace(
        client,
        name,
        json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        }),
    )
    .await;
}

async fn plain_namespace(client: &kube::Client, name: &str) {
    create_namespace(client, name, json!({})).await;
}

/// Creates namespace `name` with the test's own label plus `labels`.
async fn create_namespace(client: &kube::Client, name: &str, mut labels: Value) {
    labels["irsa-chart-test"] = json!("true");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
}

/// Creates the ServiceAccounts of `rendered` for real (pods need them), dry-runs every other
/// object except the CRD kinds, then dry-runs a pod made from each Deployment's template;
/// everything must be accepted without a warning.
async fn dry_run_all(client: &kube::Client, what: &str, rendered: &[Value]) {
    for object in rendered {
        let kind = object["kind"].as_str().unwrap();
        if helm::CRD_KINDS.contains(&kind) {
            continue;
        }
        let real = kind == "ServiceAccount";
        let answer = helm::create(client, object, !real).await;
        assert_eq!(
            answer.status,
            201,
            "{what}: {} refused: {}",
            describe(object),
            answer.body
        );
        assert!(
            answer.warnings.is_empty(),
            "{what}: {} warned: {:?}",
            describe(object),
            answer.warnings
        );
    }
    for deployment in all(rendered, "Deployment") {
        let name = format!("{}-pod", deployment["metadata"]["name"].as_str().unwrap());
        let pod = helm::pod_from_template(deployment, &name);
        let answer = helm::create(client, &pod, true).await;
        assert_eq!(
            answer.status,
            201,
            "{what}: pod of {} refused: {}",
            describe(deployment),
            answer.body
        );
        assert!(
            answer.warnings.is_empty(),
            "{what}: pod of {} warned: {:?}",
            describe(deployment),
            answer.warnings
        );
    }
}

#[tokio::test]
async fn every_value_set_and_the_manifests_pass_server_side_dry_run_under_restricted_pod_security()
{
    let client = cluster().client().await;
    for set in VALUE_SETS {
        let ns = format!("chart-dry-{set}");
        restricted_namespace(&client, &ns).await;
        // Release names keep cluster-scoped names apart from the other tests'.
        let rendered = render(&format!("dry-{set}"), &ns, set, &[]);
        dry_run_all(&client, set, &rendered).await;
        delete_namespace(&client, &ns).await;
    }

    // The checks above can fail: a Deployment whose pods would break `restricted` is warned
    // about, and such a pod is refused.
    let ns = "chart-dry-control";
    restricted_namespace(&client, ns).await;
    let mut rendered = render("dry-control", ns, "default", &[]);
    let deployment = rendered
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let answer = helm::create(&client, deployment, true).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(
        answer
            .warnings
            .iter()
            .any(|w| w.contains("violate PodSecurity")),
        "no PodSecurity warning: {:?}",
        answer.warnings
    );
    let answer = helm::create(&client, &helm::pod_from_template(deployment, "weak"), true).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    delete_namespace(&client, ns).await;

    // manifests/: its own Namespace (restricted) for real, then everything else.
    let text = std::fs::read_to_string(helm::repo().join("manifests/irsa-webhook.yaml")).unwrap();
    let manifests = objects(&text);
    let answer = helm::create(&client, &manifests[0], false).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    dry_run_all(&client, "manifests/irsa-webhook.yaml", &manifests[1..]).await;
    delete_namespace(&client, "irsa-system").await;
}

/// A kubeconfig for the API server of `cluster` that authenticates with `token`.
fn token_kubeconfig(cluster: &Cluster, token: &str, path: &Path) {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let named = &kubeconfig.clusters[0];
    let c = named.cluster.as_ref().unwrap();
    let mut entry = json!({"server": c.server});
    if let Some(ca) = &c.certificate_authority_data {
        entry["certificate-authority-data"] = json!(ca);
    }
    if let Some(ca) = &c.certificate_authority {
        entry["certificate-authority"] = json!(ca);
    }
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": entry}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// A token of ServiceAccount `ns/sa`, as the kubelet would mount into its pods.
async fn service_account_token(client: &kube::Client, ns: &str, sa: &str) -> String {
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
    ))
    .header("content-type", "application/json")
    .body(
        serde_json::to_vec(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}),
        )
        .unwrap(),
    )
    .unwrap();
    let answer: Value = client.request(request).await.expect("TokenRequest");
    answer["status"]["token"].as_str().unwrap().to_owned()
}

/// Polls dry-run pod creates of ServiceAccount `sa` in `ns` until `done`; panics after 30 s.
async fn wait_for_pod(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let started = Instant::now();
    loop {
        let created = create_pod(client, ns, pod("probe", sa, &[]), true).await;
        if created.status == 201 && done(&created.pod) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}; last answer: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhook_config(client: &kube::Client, name: &str) -> MutatingWebhookConfiguration {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configs.get(name).await.unwrap()
}

/// Points every webhook of configuration `name` (the chart's and `helm test`'s probe entry) at
/// `url`, trusting `ca_pem` (or keeping the current caBundle when `None`), as if the API server
/// could reach our test process.
async fn point_at(client: &kube::Client, name: &str, url: &str, ca_pem: Option<&str>) {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for _ in 0..5 {
        let mut config = configs.get(name).await.unwrap();
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.service = None;
            webhook.client_config.url = Some(url.to_owned());
            webhook.client_config.ca_bundle =
                ca_pem.map(|p| k8s_openapi::ByteString(p.as_bytes().to_vec()));
        }
        match configs.replace(name, &PostParams::default(), &config).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("cannot repoint {name}: {e}"),
        }
    }
    panic!("{name} kept changing");
}

/// `irsa-webhook serve` with certificate files, talking to the API server as `kubeconfig` says,
/// with every entry of configuration `name` pointed at it; stopped when dropped.
async fn webhook_for(client: &kube::Client, name: &str, kubeconfig: &Path) -> support::Server {
    let webhook = support::Server::start(
        tempfile::tempdir().unwrap(),
        &["--kubeconfig".to_owned(), kubeconfig.display().to_string()],
    );
    point_at(
        client,
        name,
        &format!("https://{}/mutate", webhook.addr),
        Some(&webhook.ca_pem),
    )
    .await;
    webhook
}

/// Puts the configuration's clientConfigs back to the chart's Service reference, keeping
/// whatever caBundle is there (as on a real cluster, where the webhook wrote it).
async fn point_at_service(client: &kube::Client, name: &str, service: Value) {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = configs.get(name).await.unwrap();
    for webhook in config.webhooks.iter_mut().flatten() {
        webhook.client_config.url = None;
        webhook.client_config.service = Some(serde_json::from_value(service.clone()).unwrap());
    }
    configs
        .replace(name, &PostParams::default(), &config)
        .await
        .unwrap();
}

fn ca_bundle(config: &MutatingWebhookConfiguration) -> Option<String> {
    config.webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// `irsa-webhook serve` with a self-managed certificate, as the chart runs it, killed on drop.
struct SelfManaged {
    child: std::process::Child,
    health: std::net::SocketAddr,
}

impl SelfManaged {
    fn start(kubeconfig: &Path, ns: &str, secret: &str, config: &str, port: u16) -> Self {
        let metrics = support::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
            .arg("serve")
            .args(["--bind-address", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("IRSA_CERT_SECRET", secret)
            .env("IRSA_CERT_SECRET_NAMESPACE", ns)
            // The API server calls https://localhost:PORT: the certificate is for that name.
            .env("IRSA_CERT_DNS", "localhost")
            .env("IRSA_WEBHOOK_CONFIG", config)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            health: ([127, 0, 0, 1], metrics).into(),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok((200, _)) = support::http_get(server.health, "/readyz") {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("self-managed webhook not ready within 30 s");
    }
}

impl Drop for SelfManaged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `helm … --kubeconfig K --namespace NS`; panics with helm's output on failure.
fn helm_at(helm: Helm, args: &[&str], ns: &str) -> String {
    let kubeconfig = cluster().kubeconfig.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--namespace", ns, "--kubeconfig", &kubeconfig]);
    helm.run(&all).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn helm_install_in_a_restricted_namespace_mutates_pods_and_upgrades_keep_the_ca_bundle() {
    let cluster = cluster();
    let client = cluster.client().await;
    let (ns, workload) = ("chart-release", "chart-workload");
    let (release, fullname) = ("chart-e2e", "chart-e2e-irsa-webhook");
    restricted_namespace(&client, ns).await;
    plain_namespace(&client, workload).await;
    let tailscale = helm::values("tailscale").display().to_string();
    let chart = helm::chart().display().to_string();

    // 1. A real install: the webhook in the default self-managed certificate mode, and the
    //    discovery server with its Tailscale container.
    let out = helm_at(
        Helm::V3,
        &["install", release, &chart, "--values", &tailscale],
        ns,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let manifest = helm_at(Helm::V3, &["get", "manifest", release], ns);
    let installed = objects(&manifest);
    assert_same(
        &installed,
        &without_hooks(&render(release, ns, "tailscale", &[])),
        "helm install vs helm template",
    );
    assert_eq!(installed.len(), 18, "{:?}", names(&installed));
    // No caBundle yet: in this mode the webhook writes it.
    assert_eq!(ca_bundle(&webhook_config(&client, fullname).await), None);

    // 2. PodSecurity judges the real pod specs (Deployments make no pods here).
    for deployment in all(&installed, "Deployment") {
        let name = format!("{}-pod", deployment["metadata"]["name"].as_str().unwrap());
        let answer =
            helm::create(&client, &helm::pod_from_template(deployment, &name), false).await;
        assert_eq!(
            answer.status,
            201,
            "{}: {}",
            describe(deployment),
            answer.body
        );
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
    }
    // ... and does enforce here: the same pod without its hardening is refused.
    let mut weak = helm::pod_from_template(find(&installed, "Deployment", fullname), "weak");
    weak["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let answer = helm::create(&client, &weak, true).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("violates PodSecurity \"restricted"),
        "{}",
        answer.body
    );

    // 3. The webhook with exactly the chart's RBAC: its ServiceAccount's token.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let token = service_account_token(&client, ns, fullname).await;
    token_kubeconfig(cluster, &token, &kubeconfig);
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), workload);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ARN}}})).unwrap(),
    )
    .await
    .unwrap();
    let own: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    own.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app", "annotations": {"eks.amazonaws.com/role-arn": ARN}}})).unwrap(),
    )
    .await
    .unwrap();

    {
        // 3a. Certificate files (support::Server), the installed configuration pointed at it.
        let _webhook = webhook_for(&client, fullname, &kubeconfig).await;
        wait_for_pod(
            &client,
            workload,
            "app",
            "the installed configuration to call the webhook",
            has_token_volume,
        )
        .await;
        let created = create_pod(&client, workload, pod("app", "app", &[]), false).await;
        assert_eq!(created.status, 201);
        assert!(has_token_volume(&created.pod), "{}", created.pod);
        let envs: Vec<&str> = created.pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(envs, ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]);

        // The chart's selectors: the skip label and the release namespace are never sent.
        let mut skipped = pod("skipped", "app", &[]);
        skipped["metadata"]["labels"] =
            json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"});
        let created = create_pod(&client, workload, skipped, true).await;
        assert_eq!(created.status, 201);
        assert!(!has_token_volume(&created.pod));
        let mut own_pod = pod("own", "app", &[]);
        own_pod["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}});
        own_pod["spec"]["containers"][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        let created = create_pod(&client, ns, own_pod, true).await;
        assert_eq!(created.status, 201, "{:?}", created);
        assert!(
            !has_token_volume(&created.pod),
            "the release namespace was mutated"
        );
    }

    // 3b. The chart's default mode: the webhook creates its certificate Secret and writes the
    //     caBundle itself, with only the Role and ClusterRole the chart grants.
    let secret_name = format!("{fullname}-tls");
    let ca_written = if cluster.is_local() {
        // The API server calls https://localhost:PORT, with no caBundle until the webhook
        // writes one at start-up (before it listens, so readiness implies it is there).
        let port = support::free_port();
        point_at(
            &client,
            fullname,
            &format!("https://localhost:{port}/mutate"),
            None,
        )
        .await;
        let webhook = SelfManaged::start(&kubeconfig, ns, &secret_name, fullname, port);
        let written = ca_bundle(&webhook_config(&client, fullname).await)
            .expect("the webhook wrote the caBundle");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = secrets.get(&secret_name).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&secret.data.as_ref().unwrap()["ca.crt"].0),
            written
        );
        wait_for_pod(
            &client,
            workload,
            "app",
            "the self-managed webhook to mutate",
            has_token_volume,
        )
        .await;
        drop(webhook);
        written
    } else {
        // Your own cluster cannot call localhost: only simulate the webhook's write.
        assert!(support::cluster::skipped_on_own_cluster(
            "the self-managed certificate run",
            "the API server must reach a webhook on localhost"
        ));
        let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let mut config = configs.get(fullname).await.unwrap();
        let written = "-----BEGIN CERTIFICATE-----\nwritten by the webhook\n".to_owned();
        config.webhooks.as_mut().unwrap()[0].client_config.ca_bundle =
            Some(k8s_openapi::ByteString(written.clone().into_bytes()));
        configs
            .replace(fullname, &PostParams::default(), &config)
            .await
            .unwrap();
        written
    };

    // 4. Upgrades must not wipe the caBundle the webhook wrote (it is stopped now, so it could
    //    not repair it): helm 3, then helm 4 on the same release.
    let rendered_service = render(release, ns, "tailscale", &[]);
    let service = find(&rendered_service, "MutatingWebhookConfiguration", fullname)["webhooks"][0]
        ["clientConfig"]["service"]
        .clone();
    point_at_service(&client, fullname, service.clone()).await;
    // A plain upgrade leaves a field the chart does not render alone (helm 3's three-way merge,
    // helm 4's apply); a forced one replaces the whole object, and only the chart's lookup of
    // the live caBundle keeps it then.
    for (helm, force, level) in [
        (Helm::V3, None, "debug"),
        (Helm::V3, Some("--force"), "info"),
        (Helm::V4, None, "trace"),
        (Helm::V4, Some("--force-replace"), "warn"),
    ] {
        let level_arg = format!("logLevel={level}");
        let mut args = vec![
            "upgrade", release, &chart, "--values", &tailscale, "--set", &level_arg,
        ];
        args.extend(force);
        let out = helm_at(helm, &args, ns);
        assert!(out.contains("STATUS: deployed"), "{helm:?}: {out}");
        let config = webhook_config(&client, fullname).await;
        assert_eq!(
            ca_bundle(&config).as_deref(),
            Some(ca_written.as_str()),
            "{helm:?} upgrade {force:?} lost the caBundle"
        );
        assert_eq!(
            serde_json::to_value(&config.webhooks.as_ref().unwrap()[0].client_config.service)
                .unwrap(),
            service
        );
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(client.clone(), ns);
        let deployment = deployments.get(fullname).await.unwrap();
        let env = &deployment.spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "IRSA_LOG_LEVEL" && e.value.as_deref() == Some(level)),
            "{helm:?}"
        );
    }

    // 5. Uninstall removes the cluster-wide objects; the webhook's own Secret stays (documented).
    let out = helm_at(Helm::V4, &["uninstall", release], ns);
    assert!(out.contains("uninstalled"), "{out}");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    assert!(configs.get_opt(fullname).await.unwrap().is_none());
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    assert!(roles.get_opt(fullname).await.unwrap().is_none());
    if cluster.is_local() {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        assert!(secrets.get_opt(&secret_name).await.unwrap().is_some());
    }
    delete_namespace(&client, ns).await;
    delete_namespace(&client, workload).await;
}

#[tokio::test]
async fn helm_4_install_with_server_side_apply_keeps_the_ca_bundle_on_upgrade() {
    let client = cluster().client().await;
    let ns = "chart-helm4";
    let (release, fullname) = ("chart-h4", "chart-h4-irsa-webhook");
    restricted_namespace(&client, ns).await;
    let chart = helm::chart().display().to_string();
    // A selector that matches no namespace, so this configuration never calls anything.
    let nowhere = "webhook.namespaceSelector.matchLabels.irsa-chart-test=nowhere";
    let out = helm_at(
        Helm::V4,
        &["install", release, &chart, "--set", nowhere],
        ns,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(ca_bundle(&webhook_config(&client, fullname).await), None);

    // What the webhook does in self mode: a replace that sets the caBundle.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = configs.get(fullname).await.unwrap();
    let written = "-----BEGIN CERTIFICATE-----\nwritten by the webhook\n";
    config.webhooks.as_mut().unwrap()[0].client_config.ca_bundle =
        Some(k8s_openapi::ByteString(written.as_bytes().to_vec()));
    configs
        .replace(fullname, &PostParams::default(), &config)
        .await
        .unwrap();

    for args in [
        vec![
            "upgrade",
            release,
            &chart,
            "--set",
            nowhere,
            "--set",
            "logLevel=debug",
        ],
        vec![
            "upgrade",
            release,
            &chart,
            "--set",
            nowhere,
            "--set",
            "webhook.timeoutSeconds=7",
        ],
    ] {
        let out = helm_at(Helm::V4, &args, ns);
        assert!(out.contains("STATUS: deployed"), "{out}");
        let config = webhook_config(&client, fullname).await;
        assert_eq!(ca_bundle(&config).as_deref(), Some(written), "{args:?}");
    }
    assert_eq!(
        webhook_config(&client, fullname).await.webhooks.unwrap()[0].timeout_seconds,
        Some(7)
    );
    helm_at(Helm::V4, &["uninstall", release], ns);
    delete_namespace(&client, ns).await;
}

/// What one `helm test` run showed.
struct TestRun {
    /// helm's exit status was 0.
    passed: bool,
    /// helm's stdout and stderr.
    helm: String,
    /// The test pod's output: doctor's report.
    report: String,
}

/// `helm test RELEASE`, playing the kubelet (the test API server has none): once helm has
/// created the test pod, its container's command runs here (the chart's binary with the pod's
/// args and env, authenticated as the pod's ServiceAccount) and its exit code becomes the pod's
/// phase. `retry_for` replaces the pod's `--retry-for`.
async fn helm_test(helm: Helm, release: &str, ns: &str, retry_for: &str) -> TestRun {
    let cluster = cluster();
    let client = cluster.client().await;
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let mut command = helm.command();
    command
        .args(["test", release, "--namespace", ns, "--kubeconfig"])
        .args([&kubeconfig, "--timeout", "90s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();

    // The new test pod (before-hook-creation has removed the last one).
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let name = format!("{release}-irsa-webhook-test");
    let started = Instant::now();
    let pod = loop {
        if let Some(pod) = pods.get_opt(&name).await.unwrap() {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            if pod.metadata.deletion_timestamp.is_none()
                && !matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
            {
                break pod;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "helm created no test pod: {:?}",
            child.wait_with_output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let spec = pod.spec.unwrap();
    let container = &spec.containers[0];
    let mut args = container.args.clone().unwrap();
    let at = args.iter().position(|a| a == "--retry-for").unwrap();
    args[at + 1] = retry_for.to_owned();
    let account = spec.service_account_name.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("kubeconfig");
    token_kubeconfig(
        cluster,
        &service_account_token(&client, ns, &account).await,
        &runner,
    );
    let mut doctor = std::process::Command::new(env!("CARGO_BIN_EXE_irsa-webhook"));
    doctor
        .args(&args)
        .arg("--kubeconfig")
        .arg(&runner)
        .env_clear()
        .env("HOME", dir.path());
    for var in container.env.iter().flatten() {
        doctor.env(&var.name, var.value.as_deref().unwrap_or_default());
    }
    let output = doctor.output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let phase = if output.status.success() {
        "Succeeded"
    } else {
        "Failed"
    };
    pods.patch_status(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();

    let output = child.wait_with_output().unwrap();
    TestRun {
        passed: output.status.success(),
        helm: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        report,
    }
}

#[tokio::test]
async fn helm_test_fails_with_the_cause_until_the_webhook_mutates_then_passes_and_cleans_up() {
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "chart-helm-test";
    let (release, fullname) = ("chart-t", "chart-t-irsa-webhook");
    restricted_namespace(&client, ns).await;
    let chart = helm::chart().display().to_string();
    let out = helm_at(Helm::V3, &["install", release, &chart], ns);
    assert!(out.contains("STATUS: deployed"), "{out}");
    // The default image is not published: the notes say so first, and what it costs.
    assert!(
        out.contains(
            "WARNING: the image ghcr.io/irsa-webhook/irsa-webhook:0.1.0 is not published yet: \
             these pods cannot\nstart (ImagePullBackOff), and under failurePolicy Ignore \
             workloads run without credentials, silently."
        ),
        "{out}"
    );
    // Helm 3 cannot show the logs of this test (--logs asks every hook for logs): its NOTES
    // say so; Helm 4's suggest --logs.
    assert!(
        out.contains(&format!(
            "  helm test {release} -n {ns}\n  kubectl -n {ns} logs {fullname}-test    (after a failure)\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("kubectl -n {ns} describe pod {fullname}-test")),
        "{out}"
    );
    let out = helm_at(
        Helm::V4,
        &["upgrade", release, &chart, "--reuse-values"],
        ns,
    );
    assert!(
        out.contains(&format!("  helm test {release} -n {ns} --logs\n")),
        "{out}"
    );

    // 1. No webhook pod answers behind the Service (an image that cannot be pulled, say): the
    //    probe pod is created unmutated (failurePolicy Ignore) and the test fails, saying so.
    let run = helm_test(Helm::V3, release, ns, "2s").await;
    assert!(!run.passed, "{}\n{}", run.helm, run.report);
    assert!(run.helm.contains("Phase:          Failed"), "{}", run.helm);
    println!("{}", run.report);
    assert!(
        run.report.contains("\nFAIL webhook.dry-run ")
            && run
                .report
                .contains("either the webhook could not be called and its failurePolicy is Ignore"),
        "{}",
        run.report
    );
    // Only what the runner may do: no cluster-wide read, so webhook.config is skipped.
    assert!(
        run.report.contains("\nskip webhook.config "),
        "{}",
        run.report
    );
    assert!(
        run.report.contains(&format!(
            "ok   role.arn         {ns}/{fullname}-test-probe is annotated with arn:aws:iam::111122223333:role/irsa-webhook-helm-test"
        )),
        "{}",
        run.report
    );
    // A failed test keeps its pod for `kubectl logs` and `describe`.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    assert!(
        pods.get_opt(&format!("{fullname}-test"))
            .await
            .unwrap()
            .is_some()
    );

    // 2. A webhook that answers (both entries pointed at this process): the test passes, with
    //    Helm 4 this time, and its hooks are gone afterwards.
    let _webhook = webhook_for(&client, fullname, &cluster.kubeconfig).await;
    // The configuration takes effect within seconds: the retry covers it, as it covers a
    // webhook still starting after `helm install`.
    let run = helm_test(Helm::V4, release, ns, "30s").await;
    println!("{}", run.report);
    assert!(run.passed, "{}\n{}", run.helm, run.report);
    assert!(
        run.report.contains(&format!(
            "\nok   webhook.dry-run  a pod of {ns}/{fullname}-test-probe created now (dry run) is mutated: aws-iam-token volume with audience \"sts.amazonaws.com\""
        )),
        "{}",
        run.report
    );
    assert!(
        run.report.ends_with(" 0 failed, 1 skipped\n"),
        "{}",
        run.report
    );
    for (kind, name) in [
        ("Pod", format!("{fullname}-test")),
        ("ServiceAccount", format!("{fullname}-test")),
        ("ServiceAccount", format!("{fullname}-test-probe")),
        ("Role", format!("{fullname}-test")),
        ("RoleBinding", format!("{fullname}-test")),
    ] {
        let gone = match kind {
            "Pod" => pods.get_opt(&name).await.unwrap().is_none(),
            "ServiceAccount" => {
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
                    .get_opt(&name)
                    .await
                    .unwrap()
                    .is_none()
            }
            "Role" => Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .unwrap()
                .is_none(),
            _ => Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .unwrap()
                .is_none(),
        };
        assert!(gone, "{kind}/{name} is still there after a passed test");
    }
    helm_at(Helm::V4, &["uninstall", release], ns);
    delete_namespace(&client, ns).await;
}
