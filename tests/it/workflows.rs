//! The GitHub Actions workflows in `.github/workflows/`, which cannot run here.
//!
//! - actionlint (with shellcheck for the `run:` scripts) reports nothing on any of them;
//! - it does catch what it is trusted to catch: copies of `release.yml` with one deliberate
//!   mistake each (an unknown action input, a wrong step output in an expression, an unquoted
//!   variable, a misspelt permission) each get exactly that finding;
//! - the release plumbing is what the README promises: tags `v*` only, read-only by default,
//!   `id-token: write` only where cosign signs, every action pinned to a release, the image built
//!   from the repository's `Dockerfile` for linux/amd64 and linux/arm64 with provenance and an
//!   SBOM, the chart pushed to `oci://ghcr.io` and both signed.
//!
//! actionlint is `$IRSA_ACTIONLINT`, else what `scripts/install-actionlint.sh` prints (built once
//! from the Go module proxy). actionlint itself reads only the files it is given: no network.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use support::helm::repo;

fn workflows_dir() -> PathBuf {
    repo().join(".github/workflows")
}

/// Every workflow file, sorted.
fn workflow_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workflows_dir())
        .expect(".github/workflows exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflows in .github/workflows");
    files
}

/// The actionlint binary: `$IRSA_ACTIONLINT`, else what `scripts/install-actionlint.sh` prints
/// (it builds actionlint on first use and installs shellcheck when it is missing).
fn actionlint_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = support::installed(
            "IRSA_ACTIONLINT",
            "scripts/install-actionlint.sh",
            "it needs Go and the Go module proxy to build actionlint, and apt-get for shellcheck \
             (or set IRSA_ACTIONLINT)",
        );
        let version = Command::new(&bin).arg("-version").output();
        assert!(
            version.as_ref().is_ok_and(|v| v.status.success()),
            "cannot run {} -version (IRSA_ACTIONLINT or scripts/install-actionlint.sh): {version:?}",
            bin.display()
        );
        // Without shellcheck actionlint silently leaves every `run:` script unchecked.
        let shellcheck = Command::new("shellcheck").arg("--version").output();
        assert!(
            shellcheck.as_ref().is_ok_and(|v| v.status.success()),
            "shellcheck is not on PATH, so actionlint would not check the run: scripts; \
             scripts/install-actionlint.sh installs it (apt-get install shellcheck)"
        );
        bin
    })
}

/// One actionlint finding.
#[derive(Debug)]
struct Finding {
    kind: String,
    line: u64,
    message: String,
}

/// actionlint's findings on `files`, run in `dir` (where it looks for its configuration).
fn actionlint(dir: &Path, files: &[PathBuf]) -> Vec<Finding> {
    let output = Command::new(actionlint_bin())
        .current_dir(dir)
        .args([
            "-no-color",
            "-shellcheck",
            "shellcheck",
            "-format",
            "{{json .}}",
        ])
        .args(files)
        .stdin(Stdio::null())
        .output()
        .expect("actionlint runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Exit status 0: nothing found; 1: findings; anything else: actionlint itself failed.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "actionlint failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let findings: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("actionlint printed no JSON ({e}): {stdout}"));
    let findings: Vec<Finding> = findings
        .as_array()
        .map(|all| {
            all.iter()
                .map(|f| Finding {
                    kind: f["kind"].as_str().unwrap_or_default().to_owned(),
                    line: f["line"].as_u64().unwrap_or_default(),
                    message: f["message"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        findings.is_empty(),
        output.status.success(),
        "actionlint's exit status disagrees with its findings: {findings:?}"
    );
    findings
}

#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let findings = actionlint(repo(), &workflow_files());
    assert!(
        findings.is_empty(),
        "actionlint on .github/workflows:\n{}",
        findings
            .iter()
            .map(|f| format!("  line {} [{}] {}", f.line, f.kind, f.message))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A copy of `release.yml` in a temporary `.github/workflows/` with `from` (which must occur
/// exactly once) replaced by `to`; returns actionlint's findings on it and the changed line.
fn lint_release_with(from: &str, to: &str) -> (Vec<Finding>, u64) {
    let text = std::fs::read_to_string(workflows_dir().join("release.yml")).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "release.yml must contain {from:?} exactly once for this test"
    );
    let line = text[..text.find(from).unwrap()].matches('\n').count() as u64 + 1;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".github/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("release.yml");
    std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
    (actionlint(tmp.path(), &[file]), line)
}

/// Asserts that every finding is of `kind` on `line` and that one of them mentions `needle`.
fn assert_only(findings: &[Finding], line: u64, kind: &str, needle: &str) {
    assert!(
        !findings.is_empty(),
        "actionlint missed a deliberate {kind} mistake on line {line}"
    );
    for finding in findings {
        assert!(
            finding.kind == kind && finding.line == line,
            "expected only [{kind}] findings on line {line}, got {findings:?}"
        );
    }
    assert!(
        findings.iter().any(|f| f.message.contains(needle)),
        "no finding mentions {needle:?}: {findings:?}"
    );
}

#[test]
fn actionlint_catches_an_unknown_action_input() {
    let (findings, line) = lint_release_with(
        "platforms: linux/amd64,linux/arm64",
        "platform: linux/amd64,linux/arm64",
    );
    assert_only(
        &findings,
        line,
        "action",
        "input \"platform\" is not defined",
    );
}

#[test]
fn actionlint_catches_a_wrong_step_output_in_an_expression() {
    let (findings, line) = lint_release_with(
        "subject-digest: ${{ steps.build.outputs.digest }}",
        "subject-digest: ${{ steps.build.outputs.digets }}",
    );
    assert_only(&findings, line, "expression", "\"digets\"");
}

#[test]
fn actionlint_runs_shellcheck_on_run_scripts() {
    let (findings, line) = lint_release_with(
        r#"cosign sign --yes "${IMAGE}@${DIGEST}""#,
        r#"cosign sign --yes ${IMAGE}@${DIGEST}"#,
    );
    // actionlint puts shellcheck's findings on the `run:` line and names the script's own line.
    let text = std::fs::read_to_string(workflows_dir().join("release.yml")).unwrap();
    let lines: Vec<&str> = text.lines().take(line as usize - 1).collect();
    let run = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("run: |"))
        .expect("the changed line is in a run: block") as u64
        + 1;
    let in_script = format!("SC2086:info:{}:", line - run);
    assert_only(&findings, run, "shellcheck", &in_script);
}

#[test]
fn actionlint_catches_a_misspelt_permission() {
    let (findings, line) = lint_release_with("      id-token: write", "      id_token: write");
    assert_only(&findings, line, "permissions", "\"id_token\"");
}

/// A workflow file parsed as YAML.
fn workflow(name: &str) -> Value {
    let text = std::fs::read_to_string(workflows_dir().join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

/// The jobs of a workflow, by id.
fn jobs(workflow: &Value) -> &serde_json::Map<String, Value> {
    workflow["jobs"].as_object().expect("jobs is a mapping")
}

/// The steps of a job.
fn steps(job: &Value) -> &[Value] {
    job["steps"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The one step of `workflow` that uses `action` (`owner/repo`, any version).
fn step_using<'a>(workflow: &'a Value, action: &str) -> &'a Value {
    let found: Vec<&Value> = jobs(workflow)
        .values()
        .flat_map(steps)
        .filter(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.split('@').next() == Some(action))
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one step using {action}");
    found[0]
}

/// The `run:` scripts of a job, joined.
fn scripts(job: &Value) -> String {
    steps(job)
        .iter()
        .filter_map(|step| step["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scalar that YAML may have read as a string or a boolean, as a string.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a `uses:` reference is pinned: a local path, or a release tag (`v4`, `v4.1.2`) or a
/// full commit SHA, never a branch such as `main`.
fn pinned(uses: &str) -> bool {
    if uses.starts_with("./") {
        return true;
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        return image.contains("@sha256:")
            || image.rsplit_once(':').is_some_and(|(_, t)| t != "latest");
    }
    let Some((_, reference)) = uses.split_once('@') else {
        return false;
    };
    let release = reference.strip_prefix('v').is_some_and(|version| {
        let parts: Vec<&str> = version.split('.').collect();
        parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let sha = reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
    release || sha
}

#[test]
fn pinned_accepts_releases_and_shas_and_refuses_branches() {
    for good in [
        "actions/checkout@v6",
        "sigstore/cosign-installer@v4.1.2",
        "docker/build-push-action@v7.0",
        "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8",
        "./.github/actions/local",
        "docker://alpine:3.22",
    ] {
        assert!(pinned(good), "{good} should count as pinned");
    }
    for bad in [
        "actions/checkout@main",
        "actions/checkout@master",
        "dtolnay/rust-toolchain@stable",
        "actions/checkout",
        "actions/checkout@v6-beta",
        "actions/checkout@8e8c483",
        "docker://alpine",
        "docker://alpine:latest",
    ] {
        assert!(!pinned(bad), "{bad} should not count as pinned");
    }
}

#[test]
fn every_action_is_pinned_to_a_release() {
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let workflow = workflow(name);
        for (id, job) in jobs(&workflow) {
            let uses = job["uses"]
                .as_str()
                .into_iter()
                .chain(steps(job).iter().filter_map(|s| s["uses"].as_str()));
            for uses in uses {
                assert!(
                    pinned(uses),
                    "{name} job {id}: `uses: {uses}` is not pinned to a release tag or commit SHA"
                );
            }
        }
    }
}

#[test]
fn release_runs_on_version_tags_only() {
    let release = workflow("release.yml");
    let on = release["on"]
        .as_object()
        .expect("release.yml: `on` is a mapping");
    let triggers: BTreeSet<&str> = on.keys().map(String::as_str).collect();
    assert_eq!(triggers, BTreeSet::from(["push", "workflow_dispatch"]));
    let push = on["push"].as_object().expect("on.push is a mapping");
    assert_eq!(
        push.keys().map(String::as_str).collect::<Vec<_>>(),
        ["tags"],
        "a release is pushed by tags only: no branches or paths"
    );
    assert_eq!(push["tags"], serde_json::json!(["v*"]));
    // Dispatched from a branch, the first job refuses.
    let check = scripts(&jobs(&release)["check"]);
    assert!(check.contains(r#"[ "$REF_TYPE" != tag ]"#), "{check}");
}

#[test]
fn permissions_are_read_only_except_where_signing_and_publishing() {
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let workflow = workflow(name);
        let top = workflow["permissions"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: top-level permissions must be a mapping"));
        for (scope, access) in top {
            assert!(
                matches!(access.as_str(), Some("read" | "none")),
                "{name}: top-level `{scope}: {access}` is more than read"
            );
        }
        for (id, job) in jobs(&workflow) {
            let signs = scripts(job).contains("cosign sign");
            let permissions = job["permissions"].as_object();
            let write = |scope: &str| {
                permissions.is_some_and(|p| p.get(scope).and_then(Value::as_str) == Some("write"))
            };
            assert_eq!(
                write("id-token"),
                signs,
                "{name} job {id}: id-token: write belongs on the job that signs with cosign, and \
                 only there"
            );
            for scope in ["packages", "attestations"] {
                assert!(
                    !write(scope) || signs,
                    "{name} job {id}: {scope}: write on a job that publishes nothing"
                );
            }
        }
    }
    let release = workflow("release.yml");
    let signing: Vec<&String> = jobs(&release)
        .iter()
        .filter(|(_, job)| job["permissions"]["id-token"] == "write")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(signing, ["release"]);
}

#[test]
fn release_builds_the_dockerfile_for_both_platforms_with_provenance() {
    let release = workflow("release.yml");
    let build = &step_using(&release, "docker/build-push-action")["with"];
    let file = build["file"].as_str().expect("build-push-action `file`");
    assert!(
        repo().join(file).is_file() && Path::new(file).file_name() == Some("Dockerfile".as_ref()),
        "the image is built from {file}, not the repository's Dockerfile"
    );
    assert!(
        repo()
            .join(build["context"].as_str().unwrap_or("."))
            .canonicalize()
            .unwrap()
            == repo().canonicalize().unwrap(),
        "the build context is the repository root"
    );
    let platforms: BTreeSet<&str> = build["platforms"]
        .as_str()
        .expect("platforms")
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64", "linux/arm64"]),
        "the image is built for both platforms"
    );
    assert_eq!(scalar(&build["provenance"]), "mode=max");
    assert_eq!(scalar(&build["sbom"]), "true");
    assert_eq!(scalar(&build["push"]), "true");
    // A builder that can build several platforms; no emulation, since the Dockerfile builds
    // every platform's binary on the runner's own platform with a cross compiler.
    step_using(&release, "docker/setup-buildx-action");
    assert!(
        !serde_json::to_string(&release)
            .unwrap()
            .contains("setup-qemu-action"),
        "the release emulates a platform, where the Dockerfile cross-compiles"
    );
    let dockerfile = std::fs::read_to_string(repo().join(file)).unwrap();
    assert!(
        dockerfile.contains("FROM --platform=$BUILDPLATFORM rust:")
            && dockerfile.contains("ARG TARGETARCH")
            && dockerfile.contains("scripts/cross-build.sh \"$TARGETARCH\" dist"),
        "the Dockerfile's build stage runs on the build platform and cross-compiles for TARGETARCH"
    );
    let login = &step_using(&release, "docker/login-action")["with"];
    assert_eq!(login["registry"], "ghcr.io");
    assert_eq!(login["password"], "${{ secrets.GITHUB_TOKEN }}");
    let tags = step_using(&release, "docker/metadata-action")["with"]["tags"]
        .as_str()
        .unwrap();
    assert!(tags.contains("type=semver,pattern={{version}}"), "{tags}");
}

#[test]
fn release_pushes_the_chart_to_ghcr_and_signs_image_and_chart() {
    let release = workflow("release.yml");
    let script = scripts(&jobs(&release)["release"]);
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("chart/Chart.yaml")).unwrap())
            .unwrap();
    let name = chart["name"].as_str().unwrap();
    assert!(
        script.contains(
            r#"helm package chart --version "$VERSION" --app-version "$VERSION" --destination dist"#
        ),
        "the chart's version and appVersion come from the tag: {script}"
    );
    let push = script
        .lines()
        .find(|line| line.trim_start().starts_with("helm push"))
        .expect("a helm push");
    assert!(
        push.contains(&format!(r#""dist/{name}-${{VERSION}}.tgz""#))
            && push.contains(r#""oci://ghcr.io/${OWNER}/charts""#),
        "the chart goes to oci://ghcr.io/<owner>/charts: {push}"
    );
    let signs: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cosign sign"))
        .collect();
    assert_eq!(
        signs,
        [
            r#"cosign sign --yes "${IMAGE}@${DIGEST}""#,
            &format!(r#"cosign sign --yes "ghcr.io/${{OWNER}}/charts/{name}@${{DIGEST}}""#),
        ],
        "keyless signatures of the image and the chart, by digest"
    );
    step_using(&release, "sigstore/cosign-installer");
}

#[test]
fn both_workflows_use_concurrency_and_ci_runs_the_test_command() {
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            workflow(name)["concurrency"]["group"].is_string(),
            "{name} has no concurrency group"
        );
    }
    let ci = workflow("ci.yml");
    assert!(ci["on"].as_object().unwrap().contains_key("pull_request"));
    assert_eq!(ci["on"]["push"]["branches"], serde_json::json!(["main"]));
    let test = &jobs(&ci)["test"];
    assert_eq!(test["runs-on"], "ubuntu-latest");
    assert_eq!(test["timeout-minutes"], 90);
    let last = steps(test).last().expect("steps");
    assert_eq!(
        last["run"], r#"sudo -E env "PATH=$PATH" HOME="$HOME" bash .ci/run"#,
        "the last step is the one test command, as root for the real-node tests"
    );
    let cache = &step_using(&ci, "actions/cache")["with"];
    let paths: BTreeSet<&str> = cache["path"].as_str().unwrap().lines().collect();
    assert_eq!(
        paths,
        BTreeSet::from(["~/.cache/irsa-webhook", "~/.cache/go-build"])
    );
    let key = cache["key"].as_str().unwrap();
    for input in [
        "'tests/cluster/**/go.sum'",
        "'scripts/*.sh'",
        "'tests/python/requirements.txt'",
    ] {
        assert!(
            key.contains(input),
            "the cache key does not hash {input}: {key}"
        );
    }
}
