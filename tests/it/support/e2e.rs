//! Per-test environment on a real control plane: a namespace, a webhook process registered for
//! that namespace only, and helpers that return what the API server stored and warned.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::Server;
use super::cluster::Cluster;

/// The role every test ServiceAccount uses unless it says otherwise.
pub const ARN: &str = "arn:aws:iam::111122223333:role/e2e";

/// How the webhook is registered.
#[derive(Debug, Clone)]
pub struct Registration {
    pub failure_policy: &'static str,
    /// Extra `serve` arguments.
    pub args: Vec<String>,
}

impl Default for Registration {
    fn default() -> Self {
        Self {
            failure_policy: "Ignore",
            args: Vec::new(),
        }
    }
}

/// A namespace with its own webhook.
pub struct Env {
    pub client: kube::Client,
    pub ns: String,
    pub webhook: Server,
    pub config_name: String,
}

/// What a pod create returned.
#[derive(Debug)]
pub struct Created {
    pub status: u16,
    pub pod: Value,
    pub warnings: Vec<String>,
}

impl Env {
    /// Creates namespace `e2e-<test>`, starts a webhook against `cluster` and waits until the
    /// API server calls it.
    pub async fn new(cluster: &Cluster, test: &str, registration: Registration) -> Self {
        let client = cluster.client().await;
        // The process id keeps reruns against your own cluster apart.
        let ns = format!("e2e-{}-{}", std::process::id(), test.replace('_', "-"));
        let ns = ns[..ns.len().min(63)].trim_end_matches('-').to_owned();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": ns, "labels": {"irsa-e2e": "true"}}}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let mut args = vec![
            "--kubeconfig".to_owned(),
            cluster.kubeconfig.display().to_string(),
            "--lookup-timeout".into(),
            "2s".into(),
        ];
        args.extend(registration.args.iter().cloned());
        let webhook = Server::start(tempfile::tempdir().unwrap(), &args);
        let env = Self {
            client,
            config_name: format!("irsa-{ns}"),
            ns,
            webhook,
        };
        env.register(&env.config_name, registration.failure_policy)
            .await;
        env.service_account("probe", &[("eks.amazonaws.com/role-arn", ARN)])
            .await;
        env.wait_effective().await;
        env
    }

    /// Registers (or replaces) a MutatingWebhookConfiguration for this namespace.
    pub async fn register(&self, name: &str, failure_policy: &str) {
        self.register_url(
            name,
            failure_policy,
            &format!("https://{}/mutate", self.webhook.addr),
            &self.webhook.ca_pem,
            "IfNeeded",
        )
        .await;
    }

    /// Registers a webhook at `url` trusting `ca_pem`, for this namespace's pods.
    pub async fn register_url(
        &self,
        name: &str,
        failure_policy: &str,
        url: &str,
        ca_pem: &str,
        reinvocation: &str,
    ) {
        use base64::Engine;
        let configs: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = configs.delete(name, &DeleteParams::default()).await;
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "pods.irsa-webhook.e2e",
                "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ns}},
                "objectSelector": {"matchExpressions": [{
                    "key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "NotIn", "values": ["true"]}]},
                "failurePolicy": failure_policy,
                "reinvocationPolicy": reinvocation,
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "admissionReviewVersions": ["v1"],
            }],
        });
        configs
            .create(
                &PostParams::default(),
                &serde_json::from_value(config).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Deletes a webhook configuration.
    pub async fn unregister(&self, name: &str) {
        let configs: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = configs.delete(name, &DeleteParams::default()).await;
    }

    /// Polls dry-run creates of a pod of the annotated `probe` ServiceAccount until mutated.
    pub async fn wait_effective(&self) {
        self.wait_until("the webhook to mutate the probe pod", |created| {
            has_token_volume(&created.pod)
        })
        .await;
    }

    /// Polls dry-run probe creates until `done` holds for the answer; panics after 30 s.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Created) -> bool) {
        let started = Instant::now();
        loop {
            let created = self.create_pod(pod("probe", "probe", &[]), true).await;
            if done(&created) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}; last answer: {created:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates (or replaces) a ServiceAccount with `annotations`.
    pub async fn service_account(&self, name: &str, annotations: &[(&str, &str)]) {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.ns);
        let annotations: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let sa =
            serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}}))
                .unwrap();
        let _ = sas.delete(name, &DeleteParams::default()).await;
        sas.create(&PostParams::default(), &sa).await.unwrap();
    }

    /// Creates `pod` (dry-run when asked) in this namespace.
    pub async fn create_pod(&self, pod: Value, dry_run: bool) -> Created {
        create_pod(&self.client, &self.ns, pod, dry_run).await
    }

    /// Creates `pod` for real and asserts the API server accepted it.
    pub async fn create(&self, pod: Value) -> Created {
        let created = self.create_pod(pod, false).await;
        assert_eq!(created.status, 201, "{created:?}");
        created
    }

    /// Removes this test's webhook configuration and namespace.
    pub async fn cleanup(self) {
        self.unregister(&self.config_name).await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
    }
}

/// Creates `pod` in `ns` (dry-run when asked) and returns the stored pod and the Warning headers.
pub async fn create_pod(client: &kube::Client, ns: &str, pod: Value, dry_run: bool) -> Created {
    let query = if dry_run { "?dryRun=All" } else { "" };
    post(client, format!("/api/v1/namespaces/{ns}/pods{query}"), &pod).await
}

/// POSTs `object` to `url` and returns the status, the answer (JSON, or its text) and the
/// messages of the Warning headers.
pub async fn post(client: &kube::Client, url: String, object: &Value) -> Created {
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(object).unwrap(),
        ))
        .unwrap();
    let response = client.send(request).await.expect("the API server answers");
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| parse_warning(v.to_str().unwrap_or_default()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let pod = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    Created {
        status,
        pod,
        warnings,
    }
}

/// A pod of ServiceAccount `sa` with containers `names` (one `app` container when empty).
pub fn pod(name: &str, sa: &str, names: &[&str]) -> Value {
    let names: Vec<&str> = if names.is_empty() {
        vec!["app"]
    } else {
        names.to_vec()
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": sa,
            "containers": names.iter().map(|n| json!({"name": n, "image": "registry.example/app:1"})).collect::<Vec<_>>(),
        },
    })
}

/// Whether the pod has our projected token volume.
pub fn has_token_volume(pod: &Value) -> bool {
    pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v["name"] == "aws-iam-token"))
}

/// `299 - "message"` → `message`.
fn parse_warning(header: &str) -> String {
    let text = header
        .split_once(" - ")
        .map_or(header, |(_, rest)| rest)
        .trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.replace("\\\"", "\"").replace("\\\\", "\\")
}
