//! The Helm chart under test: helm 3 and helm 4, kubeconform with the Kubernetes JSON schemas
//! (all installed once and cached by `scripts/install-tools.sh`), and server-side checks of
//! rendered objects against a real API server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

use super::run;

/// The Kubernetes version the chart is rendered and validated for: the test API server's minor.
pub const KUBE_VERSION: &str = "1.37.0";

/// Kinds whose CustomResourceDefinitions (cert-manager, Prometheus Operator) are not installed
/// on the test API server and have no schema in the Kubernetes set: they can be neither
/// validated by kubeconform nor dry-run created, only checked by the tests themselves.
pub const CRD_KINDS: &[&str] = &["Certificate", "Issuer", "ServiceMonitor"];

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The chart directory.
pub fn chart() -> PathBuf {
    repo().join("chart")
}

/// A value set of the tests: `chart/ci/<name>-values.yaml`.
pub fn values(name: &str) -> PathBuf {
    let path = repo().join("chart/ci").join(format!("{name}-values.yaml"));
    assert!(path.exists(), "no {}", path.display());
    path
}

/// Where helm, helm4, kubeconform and the schemas are: `$IRSA_TOOLS_DIR`, else what
/// `scripts/install-tools.sh` prints (it installs them on first use).
pub fn tools_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::installed(
            "IRSA_TOOLS_DIR",
            "scripts/install-tools.sh",
            "the chart tests need Go and the Go module proxy (helm, kubeconform) and python3 \
             with PyPI (Kubernetes schemas)",
        );
        for tool in ["helm", "helm4", "kubeconform"] {
            assert!(
                dir.join(tool).is_file(),
                "{tool} missing in {}",
                dir.display()
            );
        }
        dir
    })
}

/// A helm major version; the chart must work with both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helm {
    V3,
    V4,
}

impl Helm {
    /// Both, for tests that run everything twice.
    pub const ALL: [Helm; 2] = [Helm::V3, Helm::V4];

    /// A `helm` command whose configuration, cache and data stay in a directory of this test
    /// process, so nothing of the user's helm setup (repositories, plugins) leaks in.
    pub fn command(self) -> Command {
        static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
        let home = HOME.get_or_init(|| tempfile::tempdir().unwrap()).path();
        let bin = match self {
            Helm::V3 => "helm",
            Helm::V4 => "helm4",
        };
        let mut command = Command::new(tools_dir().join(bin));
        command
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG");
        command
    }

    /// `helm ARGS`: stdout, or the error output.
    pub fn run(self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command();
        command.args(args);
        run(command, None)
    }

    /// `helm lint --strict` with the values files.
    pub fn lint(self, values: &[&Path]) -> Result<String, String> {
        let mut command = self.command();
        command
            .args(["lint", "--strict", "--kube-version", KUBE_VERSION])
            .arg(chart());
        for file in values {
            command.arg("--values").arg(file);
        }
        run(command, None)
    }

    /// `helm template RELEASE chart --namespace NAMESPACE` with the values files and `--set`s.
    pub fn template(
        self,
        release: &str,
        namespace: &str,
        values: &[&Path],
        set: &[&str],
    ) -> Result<String, String> {
        let mut command = self.command();
        command.args(["template", release]).arg(chart()).args([
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
        ]);
        for file in values {
            command.arg("--values").arg(file);
        }
        for s in set {
            command.args(["--set", s]);
        }
        run(command, None)
    }
}

/// The objects of a rendered manifest stream, in order.
pub fn objects(yaml: &str) -> Vec<Value> {
    irsa_webhook::injection::manifest::parse(yaml, "helm output")
        .expect("helm renders valid YAML")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// `kind/name` of every object, for messages.
pub fn names(objects: &[Value]) -> Vec<String> {
    objects.iter().map(describe).collect()
}

/// `kind/name` of one object.
pub fn describe(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The one object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", names(objects)))
}

/// Every object of `kind`.
pub fn all<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Validates a manifest stream offline against the Kubernetes JSON schemas with
/// `kubeconform -strict` (unknown fields, wrong types and duplicate keys are errors); the CRD
/// kinds are skipped. Returns kubeconform's summary.
pub fn kubeconform(yaml: &str) -> Result<String, String> {
    let dir = tools_dir();
    let mut command = Command::new(dir.join("kubeconform"));
    command
        .args(["-strict", "-summary", "-output", "text"])
        .args(["-kubernetes-version", KUBE_VERSION])
        .arg("-schema-location")
        .arg(format!(
            "{}/schemas/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            dir.display()
        ))
        .args(["-skip", &CRD_KINDS.join(",")])
        .arg("-");
    run(command, Some(yaml))
}

/// What the API server answered to one create.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

/// POSTs `object` to its collection (in `namespace` when the kind is namespaced), with
/// `?dryRun=All` when asked: every admission step runs (validation, PodSecurity, webhooks, RBAC
/// escalation checks) and nothing is stored.
pub async fn create(client: &kube::Client, object: &Value, dry_run: bool) -> Answer {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the API server does not serve {gvk:?}: {e}"));
    let namespace = match capabilities.scope {
        Scope::Namespaced => Some(
            object["metadata"]["namespace"]
                .as_str()
                .expect("namespaced objects name their namespace"),
        ),
        Scope::Cluster => None,
    };
    let mut url = <DynamicObject as kube::Resource>::url_path(&resource, namespace);
    if dry_run {
        url.push_str("?dryRun=All");
    }
    let created = super::e2e::post(client, url, object).await;
    Answer {
        status: created.status,
        body: created.pod,
        warnings: created.warnings,
    }
}

/// A Pod made from a workload's pod template, as its controller would make it (there is no
/// controller-manager on the test API server, so Deployments create no pods by themselves).
pub fn pod_from_template(workload: &Value, name: &str) -> Value {
    let template = &workload["spec"]["template"];
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": workload["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"].get("annotations").cloned().unwrap_or(Value::Null),
        },
        "spec": template["spec"],
    })
}

/// One option of an `irsa-webhook` subcommand, as `--help` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// `--name`.
    pub long: String,
    /// Its environment variable, if any.
    pub env: Option<String>,
}

/// The options `irsa-webhook COMMAND --help` lists, `--help` itself and `--version` left out.
pub fn flags(command: &str) -> Vec<Flag> {
    let output = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args([command, "--help"])
        .env("COLUMNS", "200")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{command} --help failed");
    let text = String::from_utf8(output.stdout).unwrap();
    // An option starts a line, indented by at most 6 columns, with `-x, --name` or `--name`;
    // its description (and the `[env: NAME=]` note, however it wraps) follows, on that line or
    // more deeply indented ones, until the next option.
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let long = (indent <= 6 && trimmed.starts_with('-'))
            .then(|| {
                trimmed
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .find(|t| t.starts_with("--") && t.len() > 2)
            })
            .flatten();
        match long {
            Some(long) => flags.push((long.to_owned(), trimmed.to_owned())),
            None => {
                if let Some((_, description)) = flags.last_mut() {
                    description.push(' ');
                    description.push_str(trimmed);
                }
            }
        }
    }
    flags
        .into_iter()
        .filter(|(long, _)| long != "--help" && long != "--version")
        .map(|(long, description)| {
            let env = description.split_once("[env: ").map(|(_, rest)| {
                rest.split(|c: char| c == '=' || c == ']' || c.is_whitespace())
                    .next()
                    .unwrap()
                    .to_owned()
            });
            Flag { long, env }
        })
        .collect()
}
