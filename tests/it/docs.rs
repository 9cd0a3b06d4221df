//! docs/configuration.md against what it describes: every key of chart/values.yaml (with its
//! default) and every flag of `irsa-webhook serve|discovery|inject|certs|trust-policy|doctor --help` (with its
//! environment variable) is documented, and nothing documented has gone away.

use crate::support;

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

/// Whitespace-normalised text of a file of the repository.
fn words(path: &str) -> String {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// No image is published: every document that installs the chart says so in the same words,
/// with how to get one, so nobody installs pods that cannot pull their image (and, under
/// `failurePolicy: Ignore`, workloads that silently get no credentials).
#[test]
fn every_document_that_installs_the_chart_says_how_to_get_an_image() {
    let note = "**No image is published yet**: `ghcr.io/irsa-webhook/irsa-webhook` does not \
                exist, so build one with `scripts/build-image.sh` (no Docker needed), make it \
                available to your nodes and install with `--set image.repository=…,image.tag=…`. \
                With the default image the pods cannot start, and under the default \
                `failurePolicy: Ignore` your workloads run without credentials, silently.";
    for doc in [
        "README.md",
        "docs/first-deploy.md",
        "docs/configuration.md",
        "chart/README.md",
    ] {
        assert!(
            words(doc).contains(note),
            "{doc} lacks the image note:\n{note}"
        );
        assert!(
            words(doc).contains("helm install"),
            "{doc} no longer installs the chart: drop it from this list"
        );
    }
    // The walk-through installs with the image it built.
    assert!(
        words("docs/first-deploy.md")
            .contains("--set image.repository=registry.example.com/irsa-webhook,image.tag=dev")
    );
}

/// Users have never heard of our seeds or our build machine: user-facing text names projects
/// and says what the test suite does not exercise, never "here".
#[test]
fn user_facing_text_has_no_words_from_our_workshop() {
    let mut files = vec![
        "README.md".to_owned(),
        "chart/README.md".into(),
        "chart/values.yaml".into(),
        "terraform/README.md".into(),
        "bench/README.md".into(),
    ];
    for dir in [
        "docs",
        "chart/templates",
        "chart/templates/tests",
        "chart/templates/discovery",
        "chart/ci",
    ] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path.strip_prefix(repo()).unwrap().display().to_string());
            }
        }
    }
    let workshop = [
        "seed 0",
        "seed0",
        "seed-0",
        "not reachable here",
        "cannot be tested here",
        "not tested here",
        "not run here",
        "cannot run here",
        "cannot be built here",
        "cannot be downloaded here",
        "build here",
    ];
    for file in &files {
        let text = words(file).to_lowercase();
        for phrase in workshop {
            assert!(!text.contains(phrase), "{file} says {phrase:?}");
        }
    }
}
