//! docs/configuration.md against what it describes: every key of chart/values.yaml (with its
//! default) and every flag of `irsa-webhook serve|discovery|inject|certs|trust-policy|doctor --help` (with its
//! environment variable) is documented, and nothing documented has gone away.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::helm::{flags, repo};

const COMMANDS: &[&str] = &[
    "serve",
    "discovery",
    "inject",
    "certs",
    "trust-policy",
    "doctor",
];

/// Values that are maps of the user's choosing (labels, resources, selectors): documented as
/// one key, not key by key.
const FREE_FORM: &[&str] = &[
    "resources",
    "nodeSelector",
    "affinity",
    "podAnnotations",
    "podLabels",
    "annotations",
    "labels",
    "namespaceSelector",
    "objectSelector",
    "issuerRef",
];

fn configuration() -> String {
    std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap()
}

/// The text of `## heading` up to the next `## `.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no \"## {heading}\""));
    let rest = &markdown[start + heading.len() + 5..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The cells of the table rows in `text` (header and separator rows left out).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell.
fn code(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Dotted paths of the leaves of `value`: scalars, lists, empty maps and free-form maps.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() && !FREE_FORM.iter().any(|f| prefix.ends_with(f)) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, child, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), value.clone());
        }
    }
}

/// How a default is written in the table, when it is a single value.
fn written(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.is_empty() => Some("`\"\"`".into()),
        Value::String(s) => Some(format!("`{s}`")),
        Value::Number(_) | Value::Bool(_) => Some(format!("`{value}`")),
        Value::Null => Some("`null`".into()),
        Value::Array(a) if a.is_empty() => Some("`[]`".into()),
        Value::Object(o) if o.is_empty() => Some("`{}`".into()),
        _ => None,
    }
}

#[test]
fn every_chart_value_is_documented_with_its_default_and_nothing_else_is() {
    let text = std::fs::read_to_string(repo().join("chart/values.yaml")).unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
    let mut keys = BTreeMap::new();
    leaves("", &values, &mut keys);
    assert!(keys.len() > 80, "{keys:?}");

    let docs = configuration();
    let documented: BTreeMap<String, String> = rows(section(&docs, "Chart values"))
        .into_iter()
        .map(|cells| {
            let key = code(&cells[0]);
            assert_eq!(key.len(), 1, "one key per row: {cells:?}");
            (key[0].to_owned(), cells.get(1).cloned().unwrap_or_default())
        })
        .collect();

    let missing: Vec<&String> = keys
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "chart values not in docs/configuration.md: {missing:?}"
    );
    let stale: Vec<&String> = documented
        .keys()
        .filter(|k| !keys.contains_key(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents values the chart does not have: {stale:?}"
    );
    for (key, value) in &keys {
        if let Some(expected) = written(value) {
            assert_eq!(
                &documented[key], &expected,
                "docs/configuration.md: wrong default of {key}"
            );
        }
    }
}

#[test]
fn every_flag_of_every_command_is_documented_with_its_variable_and_nothing_else_is() {
    let docs = configuration();
    let flags_section = section(&docs, "Command-line flags");
    // command → flag → environment variables named in its row
    let mut documented: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for sub in flags_section.split("\n### ").skip(1) {
        let heading = sub.lines().next().unwrap();
        let commands: Vec<&str> = if heading == "Every command" {
            COMMANDS.to_vec()
        } else {
            code(heading)
                .into_iter()
                .filter(|c| COMMANDS.contains(c))
                .collect()
        };
        assert!(!commands.is_empty(), "\"### {heading}\" names no command");
        for cells in rows(sub) {
            let spans = code(&cells[0]);
            let longs: Vec<&str> = spans
                .iter()
                .copied()
                .filter(|s| s.starts_with("--"))
                .collect();
            let envs: BTreeSet<String> = spans
                .iter()
                .filter(|s| s.starts_with("IRSA_"))
                .map(|s| s.to_string())
                .collect();
            assert_eq!(longs.len(), 1, "one flag per row: {cells:?}");
            for command in &commands {
                let previous = documented
                    .entry(command)
                    .or_default()
                    .insert(longs[0].to_owned(), envs.clone());
                assert!(
                    previous.is_none(),
                    "{command} {} documented twice",
                    longs[0]
                );
            }
        }
    }

    for command in COMMANDS {
        let help = flags(command);
        assert!(!help.is_empty(), "{command} --help lists no flags");
        let docs_for = documented.get(command).cloned().unwrap_or_default();
        for flag in &help {
            let envs = docs_for.get(&flag.long).unwrap_or_else(|| {
                panic!(
                    "docs/configuration.md does not document `irsa-webhook {command} {}`",
                    flag.long
                )
            });
            if let Some(env) = &flag.env {
                assert!(
                    envs.contains(env),
                    "docs/configuration.md: {command} {} should name [`{env}`], names {envs:?}",
                    flag.long
                );
            }
        }
        let in_help: BTreeSet<&str> = help.iter().map(|f| f.long.as_str()).collect();
        let stale: Vec<&String> = docs_for
            .keys()
            .filter(|k| !in_help.contains(k.as_str()))
            .collect();
        assert!(
            stale.is_empty(),
            "docs/configuration.md documents flags `{command}` does not have: {stale:?}"
        );
    }
}

#[test]
fn the_docs_link_to_files_that_exist() {
    for page in ["configuration.md", "first-deploy.md", "troubleshooting.md"] {
        let text = std::fs::read_to_string(repo().join("docs").join(page))
            .unwrap_or_else(|e| panic!("docs/{page}: {e}"));
        for (_, rest) in text.match_indices("](").map(|(i, _)| text.split_at(i + 2)) {
            let target = &rest[..rest.find(')').unwrap()];
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(
                repo().join("docs").join(path).exists(),
                "docs/{page} links to {target}, which does not exist"
            );
        }
    }
}
