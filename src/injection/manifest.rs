//! Kubernetes YAML: multi-document streams, `List`s, and the ServiceAccounts they hold.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::injection::config::InjectionConfig;
use crate::injection::identity::SaAnnotations;

/// Input that is not a usable Kubernetes manifest; the message names the document.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: document {document}: invalid YAML: {message}")]
    Yaml {
        source_name: String,
        document: usize,
        message: String,
    },
    #[error("{source_name}: document {document}: {message}")]
    Invalid {
        source_name: String,
        document: usize,
        message: String,
    },
}

/// One document of a YAML stream, numbered from 1 in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub number: usize,
    pub value: Value,
}

/// Parses a multi-document YAML stream; empty documents are dropped, numbering is kept.
///
/// Documents are split at `---` markers in column 0 (where YAML always ends a document), so each
/// error names the document and line it is in.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    for (index, (first_line, body)) in split_documents(text).into_iter().enumerate() {
        let number = index + 1;
        if is_blank(&body) {
            continue;
        }
        let value: Value = yaml_document(&body, first_line, source_name, number)?;
        match value {
            Value::Null => {}
            Value::Object(_) => docs.push(Document { number, value }),
            other => {
                return Err(ManifestError::Invalid {
                    source_name: source_name.to_owned(),
                    document: number,
                    message: format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        kind_of(&other)
                    ),
                });
            }
        }
    }
    Ok(docs)
}

/// Parses one YAML document; errors name the document and the line in the whole text.
fn yaml_document<T: serde::de::DeserializeOwned>(
    body: &str,
    first_line: usize,
    source_name: &str,
    number: usize,
) -> Result<T, ManifestError> {
    serde_saphyr::from_str(body).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        // Drop the parser's own "error: line L column C: " prefix; we give absolute lines.
        let reason = first
            .split_once("column ")
            .and_then(|(_, rest)| rest.split_once(": "))
            .map_or(first, |(_, reason)| reason);
        let message = match e.location() {
            Some(l) => format!(
                "line {}, column {}: {reason}",
                first_line + l.line() as usize - 1,
                l.column()
            ),
            None => reason.to_owned(),
        };
        ManifestError::Yaml {
            source_name: source_name.to_owned(),
            document: number,
            message,
        }
    })
}

/// Splits at document markers; yields each document's first line number (1-based) and text.
/// A leading `---` does not start an empty first document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs: Vec<(usize, String)> = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") {
            if docs.len() == 1 && is_blank(&docs[0].1) {
                docs.clear();
            }
            let rest = line[3..].trim_start();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push((i + 2, String::new()));
            } else {
                docs.push((i + 1, format!("{rest}\n")));
            }
        } else if marker("...") {
            continue;
        } else if let Some((_, body)) = docs.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    docs
}

/// Only whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// `kind` of an object, or `""`.
pub fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// A ServiceAccount read from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountEntry {
    pub namespace: String,
    pub name: String,
    pub annotations: Option<SaAnnotations>,
}

/// The fields of one ServiceAccount, wherever it was read from.
struct SaFound<'a> {
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    annotations: Vec<(&'a str, &'a str)>,
}

impl SaFound<'_> {
    fn entry(
        &self,
        default_namespace: &str,
        cfg: &InjectionConfig,
        source_name: &str,
        document: usize,
    ) -> Result<ServiceAccountEntry, ManifestError> {
        let Some(name) = self.name.filter(|n| !n.is_empty()) else {
            return Err(ManifestError::Invalid {
                source_name: source_name.to_owned(),
                document,
                message: "ServiceAccount without metadata.name".into(),
            });
        };
        Ok(ServiceAccountEntry {
            namespace: self
                .namespace
                .filter(|n| !n.is_empty())
                .unwrap_or(default_namespace)
                .to_owned(),
            name: name.to_owned(),
            annotations: SaAnnotations::from_annotations(cfg, self.annotations.iter().copied()),
        })
    }
}

/// Just what a ServiceAccount file needs: read without building a tree per document.
#[derive(Deserialize, Default)]
struct LeanObject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: LeanMeta,
    #[serde(default)]
    items: Vec<LeanObject>,
}

#[derive(Deserialize, Default)]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Every ServiceAccount in a YAML or JSON text (multi-document, `List`s), for
/// `serve --service-accounts-file`. Documents are read one at a time into only the fields
/// needed, so large files (100 000 ServiceAccounts) stay cheap; JSON documents take the fast
/// JSON parser.
pub fn service_accounts_in_text(
    text: &str,
    source_name: &str,
    default_namespace: &str,
    cfg: &InjectionConfig,
) -> Result<Vec<ServiceAccountEntry>, ManifestError> {
    let mut out = Vec::new();
    for (index, (first_line, body)) in split_documents(text).into_iter().enumerate() {
        let number = index + 1;
        if is_blank(&body) {
            continue;
        }
        let object: LeanObject = if body.trim_start().starts_with('{') {
            serde_json::from_str(&body).map_err(|e| ManifestError::Invalid {
                source_name: source_name.to_owned(),
                document: number,
                message: format!("invalid JSON: {e}"),
            })?
        } else {
            yaml_document(&body, first_line, source_name, number)?
        };
        let objects = match object.kind.as_str() {
            "List" | "ServiceAccountList" => object.items,
            _ => vec![object],
        };
        for o in objects.iter().filter(|o| o.kind == "ServiceAccount") {
            let found = SaFound {
                name: o.metadata.name.as_deref(),
                namespace: o.metadata.namespace.as_deref(),
                annotations: (o.metadata.annotations.iter().flatten())
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            };
            out.push(found.entry(default_namespace, cfg, source_name, number)?);
        }
    }
    Ok(out)
}

/// Every ServiceAccount in `docs`, including the items of `List`s; other kinds are ignored.
pub fn service_accounts(
    docs: &[Document],
    default_namespace: &str,
    cfg: &InjectionConfig,
    source_name: &str,
) -> Result<Vec<ServiceAccountEntry>, ManifestError> {
    let mut out = Vec::new();
    for doc in docs {
        let objects: Vec<&Value> = match kind(&doc.value) {
            "List" | "ServiceAccountList" => doc
                .value
                .get("items")
                .and_then(Value::as_array)
                .map(|items| items.iter().collect())
                .unwrap_or_default(),
            _ => vec![&doc.value],
        };
        for object in objects.into_iter().filter(|o| kind(o) == "ServiceAccount") {
            let meta = object.get("metadata");
            let text = |field: &str| meta.and_then(|m| m.get(field)).and_then(Value::as_str);
            let annotations = meta
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object);
            let found = SaFound {
                name: text("name"),
                namespace: text("namespace"),
                annotations: (annotations.into_iter().flatten())
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect(),
            };
            out.push(found.entry(default_namespace, cfg, source_name, doc.number)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_streams_and_lists() {
        let text = "\
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: a
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/a
---
# only a comment
---
apiVersion: v1
kind: List
items:
- kind: ServiceAccount
  metadata: {name: b, namespace: team}
- kind: ConfigMap
  metadata: {name: c}
";
        let docs = parse(text, "sa.yaml").unwrap();
        assert_eq!(docs.iter().map(|d| d.number).collect::<Vec<_>>(), [1, 3]);
        let sas = service_accounts(&docs, "dflt", &InjectionConfig::default(), "sa.yaml").unwrap();
        assert_eq!(sas.len(), 2);
        assert_eq!(
            (sas[0].namespace.as_str(), sas[0].name.as_str()),
            ("dflt", "a")
        );
        assert_eq!(
            sas[0]
                .annotations
                .as_ref()
                .unwrap()
                .role_arn
                .as_deref()
                .unwrap(),
            "arn:aws:iam::111122223333:role/a"
        );
        assert_eq!(
            (sas[1].namespace.as_str(), sas[1].name.as_str()),
            ("team", "b")
        );
        assert!(sas[1].annotations.is_none());
    }

    #[test]
    fn service_account_files_in_yaml_and_json_read_alike() {
        let cfg = InjectionConfig::default();
        let yaml = "kind: ServiceAccount\nmetadata:\n  name: a\n  annotations: {eks.amazonaws.com/role-arn: arn}\n---\nkind: List\nitems:\n- {kind: ServiceAccount, metadata: {name: b, namespace: team}}\n- {kind: ConfigMap, metadata: {name: c}}\n";
        let json = r#"{"kind":"List","items":[{"kind":"ServiceAccount","metadata":{"name":"a","annotations":{"eks.amazonaws.com/role-arn":"arn"}}},{"kind":"ServiceAccount","metadata":{"name":"b","namespace":"team"}}]}"#;
        let from_yaml = service_accounts_in_text(yaml, "y", "default", &cfg).unwrap();
        let from_json = service_accounts_in_text(json, "j", "default", &cfg).unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(from_yaml.len(), 2);
        let docs = parse(yaml, "y").unwrap();
        assert_eq!(
            service_accounts(&docs, "default", &cfg, "y").unwrap(),
            from_yaml
        );
        let err = service_accounts_in_text(
            "kind: Pod\n---\nkind: ServiceAccount\nmetadata: {namespace: x}\n",
            "f",
            "d",
            &cfg,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: document 2: ServiceAccount without metadata.name"
        );
        let err = service_accounts_in_text("{\"kind\": ", "f", "d", &cfg).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f: document 1: invalid JSON: EOF"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let text = "kind: Pod\n---\nkind: Pod\nmetadata: {name: [unclosed\n";
        let err = parse(text, "in.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "in.yaml: document 2: invalid YAML: line 4, column 18: unclosed bracket"
            ),
            "{err}"
        );
    }

    #[test]
    fn scalars_and_nameless_service_accounts_are_refused() {
        let err = parse("kind: Pod\n---\njust a string\n", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: document 2: expected a Kubernetes object (a mapping), found a string"
        );
        let docs = parse("kind: ServiceAccount\nmetadata: {}\n", "x").unwrap();
        let err = service_accounts(&docs, "d", &InjectionConfig::default(), "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: document 1: ServiceAccount without metadata.name"
        );
    }
}
#[cfg(test)]
mod boolean_like_names {
    #[test]
    fn plain_scalars_that_look_like_booleans_stay_names() {
        let cfg = crate::injection::config::InjectionConfig::default();
        for ns in ["n", "no", "y", "on", "off", "true"] {
            for yaml in [
                format!("kind: ServiceAccount\nmetadata: {{name: a, namespace: {ns}}}\n"),
                format!(
                    "kind: List\nitems:\n- {{kind: ServiceAccount, metadata: {{name: a, namespace: {ns}}}}}\n"
                ),
            ] {
                let got = super::service_accounts_in_text(&yaml, "f", "default", &cfg).unwrap();
                assert_eq!(got[0].namespace, ns, "{yaml}");
            }
        }
    }
}
