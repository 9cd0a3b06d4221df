//! The offline `inject` command's logic: mutate the pods and pod templates of parsed manifests
//! with exactly the mutation `serve` uses.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::injection::config::InjectionConfig;
use crate::injection::identity::SaAnnotations;
use crate::injection::manifest::{self, Document, ServiceAccountEntry};
use crate::injection::mutation::{self, Decision, ServiceAccount};
use crate::injection::pod::PodView;
use crate::injection::schema;

/// A workload whose pod template cannot be found or read.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {document} ({kind} {name}): {message}")]
pub struct InjectError {
    pub source_name: String,
    pub document: usize,
    pub kind: String,
    pub name: String,
    pub message: String,
}

/// What happened to one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `Kind/name` for messages.
    pub object: String,
    /// `None` for an object that is not a workload (warned about as a likely slip of one).
    pub decision: Option<Decision>,
    pub warnings: Vec<String>,
}

/// Mutates documents against a fixed set of ServiceAccounts.
pub struct Injector<'c> {
    cfg: &'c InjectionConfig,
    default_namespace: String,
    service_accounts: HashMap<(String, String), Option<SaAnnotations>>,
}

impl<'c> Injector<'c> {
    /// `default_namespace` applies to objects without `metadata.namespace`.
    pub fn new(
        cfg: &'c InjectionConfig,
        default_namespace: &str,
        service_accounts: impl IntoIterator<Item = ServiceAccountEntry>,
    ) -> Self {
        Self {
            cfg,
            default_namespace: default_namespace.to_owned(),
            service_accounts: service_accounts
                .into_iter()
                .map(|e| ((e.namespace, e.name), e.annotations))
                .collect(),
        }
    }

    /// Mutates the pods in `doc` (a `List`'s items too); `None` reports for non-workloads.
    pub fn inject(
        &self,
        doc: &mut Document,
        source_name: &str,
    ) -> Result<Vec<Report>, InjectError> {
        if manifest::kind(&doc.value) == "List" {
            let mut reports = Vec::new();
            if let Some(items) = doc.value.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    reports.extend(self.inject_object(item, doc.number, source_name)?);
                }
            }
            return Ok(reports);
        }
        Ok(self
            .inject_object(&mut doc.value, doc.number, source_name)?
            .into_iter()
            .collect())
    }

    fn inject_object(
        &self,
        object: &mut Value,
        document: usize,
        source_name: &str,
    ) -> Result<Option<Report>, InjectError> {
        let kind = manifest::kind(object).to_owned();
        let meta = object.get("metadata");
        let name = meta
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_owned();
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.default_namespace)
            .to_owned();
        let object_name = format!("{kind}/{name}");
        let Some(template_path) = schema::template_path(&kind) else {
            return Ok(schema::meant_kind(&kind).map(|meant| Report {
                object: object_name,
                decision: None,
                warnings: vec![format!(
                    "kind {kind} is not a kind Kubernetes knows; did you mean {meant}? Left as it is"
                )],
            }));
        };
        let unknown = schema::unknown_fields(&kind, object);
        let error = |message: String| InjectError {
            source_name: source_name.to_owned(),
            document,
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        let pod = template_path
            .iter()
            .try_fold(&mut *object, |v, key| v.get_mut(*key))
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                error(format!(
                    "has no pod template at {}",
                    template_path.join(".")
                ))
            })?;

        let view =
            PodView::deserialize(&*pod).map_err(|e| error(format!("unreadable pod spec: {e}")))?;
        let mut warnings: Vec<String> = unknown
            .iter()
            .map(|field| format!("unknown field \"{field}\": kubectl would refuse it"))
            .collect();
        if view
            .metadata
            .labels
            .get(self.cfg.keys.skip_pod.as_str())
            .is_some_and(|v| v == "true")
        {
            // In a cluster the webhook's objectSelector keeps such pods from reaching us at all.
            return Ok(Some(Report {
                object: object_name,
                decision: Some(Decision::OptedOut),
                warnings,
            }));
        }
        let sa_name = view.service_account().to_owned();
        let sa = match self
            .service_accounts
            .get(&(namespace.clone(), sa_name.clone()))
        {
            Some(annotations) => ServiceAccount::Found(annotations.as_ref()),
            None => ServiceAccount::NotFound,
        };
        let outcome = mutation::mutate(&view, &format!("{namespace}/{sa_name}"), sa, self.cfg);
        drop(view);
        json_patch::patch(pod, &outcome.patch)
            .map_err(|e| error(format!("patch did not apply: {e}")))?;
        warnings.extend(outcome.warnings);
        Ok(Some(Report {
            object: object_name,
            decision: Some(outcome.decision),
            warnings,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::111122223333:role/app";

    fn run(yaml: &str) -> (Vec<Document>, Vec<Report>) {
        let cfg = InjectionConfig::default();
        let mut docs = manifest::parse(yaml, "in.yaml").unwrap();
        let sas = manifest::service_accounts(&docs, "default", &cfg, "in.yaml").unwrap();
        let injector = Injector::new(&cfg, "default", sas);
        let mut reports = Vec::new();
        for doc in &mut docs {
            reports.extend(injector.inject(doc, "in.yaml").unwrap());
        }
        (docs, reports)
    }

    fn sa_doc() -> String {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: team\n  annotations:\n    eks.amazonaws.com/role-arn: {ARN}\n"
        )
    }

    #[test]
    fn every_workload_kind_gets_its_template_injected() {
        let template = "template:\n      spec:\n        serviceAccountName: app\n        containers: [{name: c, image: x}]";
        let kinds = [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
        ];
        let mut yaml = sa_doc();
        for kind in kinds {
            yaml += &format!(
                "---\nkind: {kind}\nmetadata: {{name: w, namespace: team}}\nspec:\n    {template}\n"
            );
        }
        yaml += &format!(
            "---\nkind: CronJob\nmetadata: {{name: w, namespace: team}}\nspec:\n  jobTemplate:\n    spec:\n      {}\n",
            template.replace("\n      ", "\n        ")
        );
        yaml += "---\nkind: Pod\nmetadata: {name: p, namespace: team}\nspec: {serviceAccountName: app, containers: [{name: c}]}\n";
        yaml += "---\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n";
        let (docs, reports) = run(&yaml);
        assert_eq!(reports.len(), 7);
        assert!(
            reports
                .iter()
                .all(|r| r.decision == Some(Decision::Mutated)),
            "{reports:?}"
        );
        let pointers = [
            "/spec/template/spec",
            "/spec/template/spec",
            "/spec/template/spec",
            "/spec/template/spec",
            "/spec/template/spec",
            "/spec/jobTemplate/spec/template/spec",
            "/spec",
        ];
        for (doc, pointer) in docs[1..8].iter().zip(pointers) {
            let spec = doc.value.pointer(pointer).unwrap();
            assert_eq!(spec["containers"][0]["env"][0]["value"], ARN, "{pointer}");
            assert_eq!(spec["volumes"][0]["name"], "aws-iam-token");
        }
        assert_eq!(
            docs[8].value,
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}})
        );
    }

    #[test]
    fn namespaces_default_and_lists_and_label_opt_out() {
        let yaml = format!(
            "{}---\nkind: List\nitems:\n- kind: Pod\n  metadata: {{name: a}}\n  spec: {{serviceAccountName: app, containers: [{{name: c}}]}}\n- kind: Pod\n  metadata: {{name: b, namespace: team, labels: {{eks.amazonaws.com/skip-pod-identity-webhook: 'true'}}}}\n  spec: {{serviceAccountName: app, containers: [{{name: c}}]}}\n",
            sa_doc()
        );
        let (docs, reports) = run(&yaml);
        // Pod a is in "default", where no ServiceAccount "app" was given.
        assert_eq!(reports[0].decision, Some(Decision::ServiceAccountNotFound));
        assert_eq!(
            reports[0].warnings,
            ["ServiceAccount default/app not found: AWS credentials not injected"]
        );
        assert_eq!(reports[1].decision, Some(Decision::OptedOut));
        assert!(docs[1].value["items"][1]["spec"].get("volumes").is_none());
    }

    #[test]
    fn workload_without_template_is_an_error_naming_the_document() {
        let cfg = InjectionConfig::default();
        let mut docs = manifest::parse(
            "kind: Pod\n---\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
            "x.yaml",
        )
        .unwrap();
        let injector = Injector::new(&cfg, "default", []);
        let err = injector.inject(&mut docs[1], "x.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml: document 2 (Deployment d): has no pod template at spec.template"
        );
    }
}
