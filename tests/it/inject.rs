//! The `inject` and `certs` commands as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn quickstart_example_prints_the_mutated_pod() {
    let out = run(
        &[
            "inject",
            "-f",
            "examples/pod.yaml",
            "--service-account",
            "examples/serviceaccount.yaml",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let pod = &docs[0];
    let env: Vec<&str> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "DEBUG",
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );
    // Strings that look like other YAML types stay strings.
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "true");
    assert_eq!(pod["spec"]["volumes"][0]["name"], "aws-iam-token");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stdin_streams_keep_order_and_warnings_go_to_stderr() {
    let input = "\
kind: ServiceAccount
metadata: {name: app, annotations: {eks.amazonaws.com/role-arn: not-an-arn}}
---
kind: ConfigMap
metadata: {name: untouched}
data: {key: value}
---
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      serviceAccountName: app
      containers: [{name: web, image: nginx}]
";
    let out = run(&["inject", "-f", "-", "--namespace", "shop"], input);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[1]["metadata"]["name"], "untouched");
    assert_eq!(
        docs[2]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "not-an-arn"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "warning: <stdin>: document 3 (Deployment/web): eks.amazonaws.com/role-arn=\"not-an-arn\" on ServiceAccount shop/app is not a valid IAM role ARN (it must start with arn:; role names need --compose-role-arn and --aws-account-id): injected as is, STS will refuse it\n"
    );
}

#[test]
fn role_names_are_composed_into_arns_of_the_given_account_and_partition() {
    let input = "\
kind: ServiceAccount
metadata: {name: app, annotations: {eks.amazonaws.com/role-arn: team/app}}
---
kind: Pod
metadata: {name: web}
spec:
  serviceAccountName: app
  containers: [{name: web, image: nginx}]
";
    let args = [
        "inject",
        "-f",
        "-",
        "--compose-role-arn",
        "--aws-account-id",
        "111122223333",
        "--aws-partition=aws-cn",
    ];
    let out = run(&args, input);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    let env = &docs[1]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["name"], "AWS_ROLE_ARN");
    assert_eq!(
        env[0]["value"],
        "arn:aws-cn:iam::111122223333:role/team/app"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without an account: said once at start, and the name stays a name.
    let out = run(&args[..4], input);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--compose-role-arn has no effect without --aws-account-id"),
        "{stderr}"
    );
    assert!(stderr.contains("role names need --compose-role-arn and --aws-account-id"));
}

#[test]
fn malformed_input_names_the_document_and_fails() {
    for (input, message) in [
        (
            "kind: Pod\n---\nkind: Pod\nspec: [unclosed\n",
            "error: <stdin>: document 2: invalid YAML: line 4, column 7",
        ),
        (
            "kind: Pod\n---\n- a list\n",
            "error: <stdin>: document 2: expected a Kubernetes object (a mapping), found a sequence",
        ),
        (
            "kind: CronJob\nmetadata: {name: c}\nspec: {}\n",
            "error: <stdin>: document 1 (CronJob c): has no pod template at spec.jobTemplate.spec.template",
        ),
    ] {
        let out = run(&["inject", "-f", "-"], input);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing printed on error");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with(message), "{stderr}");
    }
    let out = run(&["inject", "-f", "does-not-exist.yaml"], "");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: cannot read does-not-exist.yaml")
    );
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let out = run(&["inject", "-f", "-", "--token-expiration", "60"], "");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --token-expiration \"60\" is invalid: must be between 600 and 4294967296 seconds\n"
    );
}

#[test]
fn certs_command_writes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out_dir = out_dir.to_str().unwrap();
    let out = run(
        &[
            "certs",
            "--out",
            out_dir,
            "--dns",
            "webhook.svc",
            "--ip",
            "127.0.0.1",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 4);
    let again = run(&["certs", "--out", out_dir, "--dns", "webhook.svc"], "");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
    let none = run(&["certs", "--out", out_dir, "--force"], "");
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("give at least one --dns name or --ip address")
    );
}

#[test]
fn what_kubectl_would_refuse_is_a_warning_and_the_documents_are_kept() {
    let input = "\
kind: ServiceAccount
metadata: {name: app, annotations: {eks.amazonaws.com/rolearn: arn:aws:iam::111122223333:role/app}}
---
kind: Pods
metadata: {name: typo}
spec: {containers: [{name: a}]}
---
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      serviceAccountName: app
      contianers: [{name: web, image: nginx}]
      containers: [{name: web, image: nginx}]
";
    let out = run(&["inject", "-f", "-"], input);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[1]["kind"], "Pods");
    assert!(
        docs[2]["spec"]["template"]["spec"]["contianers"].is_array(),
        "kept"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "warning: <stdin>: document 2 (Pods/typo): kind Pods is not a kind Kubernetes knows; did you mean Pod? Left as it is\n\
         warning: <stdin>: document 3 (Deployment/web): unknown field \"spec.template.spec.contianers\": kubectl would refuse it\n\
         warning: <stdin>: document 3 (Deployment/web): ServiceAccount default/app: annotation eks.amazonaws.com/rolearn is not one this webhook reads on a ServiceAccount; did you mean eks.amazonaws.com/role-arn?\n"
    );
}

#[test]
fn trust_policy_prints_the_policy_for_exactly_the_given_service_accounts() {
    let out = run(
        &[
            "trust-policy",
            "--issuer-url",
            "https://oidc.example.com/clusters/a",
            "--service-account",
            "shop/app",
            "--account-id",
            "111122223333",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        policy["Statement"][0]["Principal"]["Federated"],
        "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/clusters/a"
    );
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["oidc.example.com/clusters/a:sub"],
        "system:serviceaccount:shop:app"
    );
    for (args, message) in [
        (
            &["--service-account", "app"][..],
            "--service-account \"app\" must be NAMESPACE/NAME",
        ),
        (
            &["--service-account", "a/b", "--partition", "aws-mars"],
            "--partition \"aws-mars\" must be one of aws, aws-cn, aws-us-gov",
        ),
    ] {
        let mut all = vec!["trust-policy", "--issuer-url", "https://oidc.example.com"];
        all.extend_from_slice(args);
        let out = run(&all, "");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}
