//! The Terraform / OpenTofu modules in `terraform/`.
//!
//! - `terraform fmt -check -recursive terraform/`;
//! - `modules/trust-policy`'s own `terraform test` suite (offline: the module has no provider);
//! - the module and `irsa-webhook trust-policy` write the same policy for the same settings, and
//!   `--format terraform` calls `modules/role` with its variables, whose values give the same
//!   policy through `modules/trust-policy`;
//! - a static check of every module and example, with hcl-rs: references, module calls,
//!   descriptions and types, required providers. `modules/oidc-provider`, `modules/role` and
//!   `examples/basic` need the AWS provider, which cannot be downloaded here, so this is all
//!   that checks them.
//!
//! The binary is `$IRSA_TERRAFORM`, else what `scripts/install-terraform.sh` prints (terraform
//! or tofu on PATH, else OpenTofu built once from the Go module proxy). Nothing is written into
//! the work tree: data directories, state and generated configurations live in temp dirs.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use hcl::expr::{Operation, TemplateExpr, Traversal, TraversalOperator, Variable};
use hcl::template::{Directive, Element};
use hcl::{Attribute, Block, Body, Expression, ObjectKey, Structure, Template};
use serde_json::Value;

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn terraform_dir() -> PathBuf {
    repo().join("terraform")
}

fn trust_policy_dir() -> PathBuf {
    terraform_dir().join("modules/trust-policy")
}

/// The terraform or tofu binary: `$IRSA_TERRAFORM`, else what `scripts/install-terraform.sh`
/// prints (it builds OpenTofu on first use when neither is installed).
fn terraform_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = support::installed(
            "IRSA_TERRAFORM",
            "scripts/install-terraform.sh",
            "install Terraform or OpenTofu 1.6+ on PATH, set IRSA_TERRAFORM, or give it Go and \
             the Go module proxy to build OpenTofu",
        );
        let version = Command::new(&bin)
            .args(["version", "-json"])
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (IRSA_TERRAFORM or scripts/install-terraform.sh): {e}",
                    bin.display()
                )
            });
        assert!(
            version.status.success(),
            "{} version -json failed: {}",
            bin.display(),
            String::from_utf8_lossy(&version.stderr)
        );
        bin
    })
}

/// A working directory for terraform outside the work tree: its data directory (`.terraform`,
/// modules.json) and an empty CLI configuration (without one, tofu warns that
/// ~/.terraformrc is missing; with the user's, plugin caches and mirrors would leak in).
struct Workspace {
    tmp: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cli.tfrc"), "").unwrap();
        Workspace { tmp }
    }

    /// A root module directory of this workspace.
    fn root(&self) -> PathBuf {
        let root = self.tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    /// `terraform args` in `dir`, with no `TF_*` setting of the caller's.
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(terraform_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TF_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .current_dir(dir)
            .env("TF_DATA_DIR", self.tmp.path().join("data"))
            .env("TF_CLI_CONFIG_FILE", self.tmp.path().join("cli.tfrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs `terraform args` in `dir`: stdout, or a message with both outputs when it fails.
    fn run(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        support::run(self.command(dir, args), None)
    }
}

/// `irsa-webhook trust-policy args`: stdout, or a panic with stderr.
fn irsa_webhook_trust_policy(args: &[String]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_irsa-webhook"));
    // The command reads IRSA_* settings from the environment (IRSA_AWS_ACCOUNT_ID, ...).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IRSA_") {
            command.env_remove(key);
        }
    }
    command
        .arg("trust-policy")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null());
    support::run(command, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Every path under `dir`, directories included.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            paths.insert(path);
        }
    }
    paths
}

#[test]
fn terraform_fmt_finds_nothing_to_change() {
    let workspace = Workspace::new();
    let result = workspace.run(
        repo(),
        &[
            "fmt",
            "-check",
            "-recursive",
            "-diff",
            "-no-color",
            "terraform/",
        ],
    );
    if let Err(diff) = result {
        panic!("terraform/ is not formatted; run `terraform fmt -recursive terraform/`:\n{diff}");
    }
}

/// `Success! 44 passed, 0 failed.` (also with `, N skipped`): (passed, failed).
fn test_summary(output: &str) -> Option<(u32, u32)> {
    output.lines().rev().find_map(|line| {
        let (_, counts) = line.split_once('!')?;
        let mut numbers = counts.split(',').map(|part| {
            let mut words = part.split_whitespace();
            let n: u32 = words.next()?.parse().ok()?;
            Some((n, words.next()?.trim_end_matches('.').to_owned()))
        });
        let (passed, p) = numbers.next()??;
        let (failed, f) = numbers.next()??;
        (p == "passed" && f == "failed").then_some((passed, failed))
    })
}

#[test]
fn trust_policy_module_passes_its_own_tests() {
    let dir = trust_policy_dir();
    let before = tree(&terraform_dir());
    let workspace = Workspace::new();
    workspace
        .run(
            &dir,
            &["init", "-backend=false", "-input=false", "-no-color"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let output = workspace
        .run(&dir, &["test", "-no-color"])
        .unwrap_or_else(|e| panic!("terraform test in {}: {e}", dir.display()));
    let (passed, failed) = test_summary(&output)
        .unwrap_or_else(|| panic!("no `N passed, N failed` summary in:\n{output}"));
    assert_eq!(failed, 0, "{output}");
    assert!(
        passed >= 40,
        "only {passed} runs passed, expected at least 40 (were tests dropped?):\n{output}"
    );
    let after = tree(&terraform_dir());
    let new: Vec<_> = after.difference(&before).collect();
    assert!(
        new.is_empty(),
        "terraform init/test wrote into the work tree: {new:?}"
    );
}

#[test]
fn test_summary_reads_terraform_and_tofu_lines() {
    assert_eq!(
        test_summary("x\nSuccess! 44 passed, 0 failed.\n"),
        Some((44, 0))
    );
    assert_eq!(
        test_summary("Failure! 43 passed, 1 failed, 2 skipped.\n"),
        Some((43, 1))
    );
    assert_eq!(test_summary("run \"a\"... pass\n"), None);
}

/// One setting of the trust policy, for both the command and the module.
struct Case {
    name: &'static str,
    issuer_url: &'static str,
    service_accounts: &'static [&'static str],
    /// Empty: the default (sts.amazonaws.com) of both.
    audiences: &'static [&'static str],
    account_id: Option<&'static str>,
    /// `None`: the default (aws) of both.
    partition: Option<&'static str>,
}

impl Case {
    fn flags(&self) -> Vec<String> {
        let mut flags = vec!["--issuer-url".to_owned(), self.issuer_url.to_owned()];
        for sa in self.service_accounts {
            flags.extend(["--service-account".to_owned(), (*sa).to_owned()]);
        }
        for aud in self.audiences {
            flags.extend(["--audience".to_owned(), (*aud).to_owned()]);
        }
        if let Some(account) = self.account_id {
            flags.extend(["--account-id".to_owned(), account.to_owned()]);
        }
        if let Some(partition) = self.partition {
            flags.extend(["--partition".to_owned(), partition.to_owned()]);
        }
        flags
    }

    /// The arguments of a `modules/trust-policy` call.
    fn arguments(&self) -> Vec<Attribute> {
        let list = |items: &[&str]| {
            Expression::Array(items.iter().map(|s| Expression::from(*s)).collect())
        };
        let mut arguments = vec![
            Attribute::new("issuer_url", self.issuer_url),
            Attribute::new("service_accounts", list(self.service_accounts)),
        ];
        if !self.audiences.is_empty() {
            arguments.push(Attribute::new("audiences", list(self.audiences)));
        }
        if let Some(account) = self.account_id {
            arguments.push(Attribute::new("account_id", account));
        }
        if let Some(partition) = self.partition {
            arguments.push(Attribute::new("partition", partition));
        }
        arguments
    }
}

const CASES: &[Case] = &[
    Case {
        name: "issuer_with_a_path_and_a_trailing_slash",
        issuer_url: "https://bucket.s3.eu-west-1.amazonaws.com/clusters/a/",
        service_accounts: &["shop/app"],
        audiences: &[],
        account_id: Some("111122223333"),
        partition: None,
    },
    Case {
        name: "issuer_with_a_port",
        issuer_url: "https://oidc.example.com:8443/clusters/b",
        service_accounts: &["shop/app"],
        audiences: &[],
        account_id: Some("111122223333"),
        partition: None,
    },
    Case {
        name: "one_subject_no_account",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["kube-system/s3-reader.v2"],
        audiences: &[],
        account_id: None,
        partition: None,
    },
    Case {
        name: "several_subjects_in_their_order",
        issuer_url: "https://oidc.example.com/",
        service_accounts: &["shop/worker", "billing/api", "shop/app"],
        audiences: &[],
        account_id: Some("111122223333"),
        partition: Some("aws"),
    },
    Case {
        name: "a_wildcard_subject",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["team/*"],
        audiences: &[],
        account_id: None,
        partition: None,
    },
    Case {
        name: "wildcards_among_exact_subjects",
        issuer_url: "https://oidc.example.com/clusters/prod",
        service_accounts: &["shop/app", "ci-?/runner", "team/*"],
        audiences: &[],
        account_id: Some("111122223333"),
        partition: None,
    },
    Case {
        name: "one_other_audience",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["shop/app"],
        audiences: &["irsa.example.com"],
        account_id: None,
        partition: None,
    },
    Case {
        name: "several_audiences_and_subjects",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["shop/app", "shop/worker"],
        audiences: &["sts.amazonaws.com", "irsa.example.com"],
        account_id: Some("111122223333"),
        partition: None,
    },
    Case {
        name: "several_audiences_beside_a_wildcard",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["team/*"],
        audiences: &["sts.amazonaws.com", "irsa.example.com"],
        account_id: None,
        partition: None,
    },
    Case {
        name: "partition_aws_cn",
        issuer_url: "https://oidc.example.com/clusters/cn",
        service_accounts: &["shop/app", "shop/worker"],
        audiences: &[],
        account_id: Some("111122223333"),
        partition: Some("aws-cn"),
    },
    Case {
        name: "partition_aws_us_gov_without_account",
        issuer_url: "https://oidc.example.com",
        service_accounts: &["team/*"],
        audiences: &[],
        account_id: None,
        partition: Some("aws-us-gov"),
    },
];

/// Applies one root module that calls `modules/trust-policy` once per case (the module has no
/// provider and no resources: an apply only evaluates it) and returns each call's `json`
/// output, parsed, by case name.
fn module_policies(cases: &[(String, Vec<Attribute>)]) -> BTreeMap<String, Value> {
    let source = trust_policy_dir();
    let mut body = Body::builder();
    for (name, arguments) in cases {
        body = body
            .add_block(
                Block::builder("module")
                    .add_label(name.as_str())
                    .add_attribute(("source", source.to_str().unwrap()))
                    .add_attributes(arguments.iter().cloned())
                    .build(),
            )
            .add_block(
                Block::builder("output")
                    .add_label(name.as_str())
                    .add_attribute((
                        "value",
                        Traversal::builder(Variable::new("module").unwrap())
                            .attr(name.as_str())
                            .attr("json")
                            .build(),
                    ))
                    .build(),
            );
    }
    let config = hcl::format::to_string(&body.build()).unwrap();
    let workspace = Workspace::new();
    let root = workspace.root();
    std::fs::write(root.join("main.tf"), &config).unwrap();
    let steps: [&[&str]; 2] = [
        &["init", "-backend=false", "-input=false", "-no-color"],
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    ];
    for args in steps {
        workspace
            .run(&root, args)
            .unwrap_or_else(|e| panic!("{e}\nfor the configuration:\n{config}"));
    }
    let outputs = workspace
        .run(&root, &["output", "-json", "-no-color"])
        .unwrap_or_else(|e| panic!("{e}"));
    let outputs: BTreeMap<String, Value> = serde_json::from_str(&outputs).unwrap();
    cases
        .iter()
        .map(|(name, _)| {
            let json = outputs
                .get(name)
                .and_then(|output| output["value"].as_str())
                .unwrap_or_else(|| panic!("no string output {name} in {outputs:?}"));
            let policy = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("case {name}: output json is not JSON ({e}): {json}"));
            (name.clone(), policy)
        })
        .collect()
}

/// `irsa-webhook trust-policy --format json` for these flags, parsed.
fn cli_policy(flags: &[String]) -> Value {
    let mut args = flags.to_vec();
    args.extend(["--format".to_owned(), "json".to_owned()]);
    let stdout = irsa_webhook_trust_policy(&args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{flags:?}: not JSON ({e}): {stdout}"))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn trust_policy_module_writes_what_the_command_writes() {
    assert!(CASES.len() >= 8);
    let calls: Vec<(String, Vec<Attribute>)> = CASES
        .iter()
        .map(|case| (case.name.to_owned(), case.arguments()))
        .collect();
    let module = module_policies(&calls);
    for case in CASES {
        let cli = cli_policy(&case.flags());
        assert!(
            cli == module[case.name],
            "case {}: irsa-webhook trust-policy {:?} and modules/trust-policy differ:\n\
             command:\n{}\nmodule:\n{}",
            case.name,
            case.flags(),
            pretty(&cli),
            pretty(&module[case.name])
        );
    }
}

/// `irsa-webhook trust-policy --format terraform` for these flags, parsed: the one block.
fn cli_terraform(flags: &[String]) -> Block {
    let mut args = flags.to_vec();
    args.extend(["--format".to_owned(), "terraform".to_owned()]);
    let text = irsa_webhook_trust_policy(&args);
    let body = hcl::parse(&text)
        .unwrap_or_else(|e| panic!("{flags:?}: --format terraform is not HCL ({e}):\n{text}"));
    let mut structures = body.into_inner();
    assert_eq!(
        structures.len(),
        1,
        "{flags:?}: expected one module block:\n{text}"
    );
    match structures.pop() {
        Some(Structure::Block(block)) => block,
        _ => panic!("{flags:?}: expected a module block, not an attribute:\n{text}"),
    }
}

#[test]
fn format_terraform_calls_the_role_module_with_its_variables_and_the_same_policy() {
    let role = Module::load(&terraform_dir().join("modules/role"));
    assert!(role.problems.is_empty(), "{:?}", role.problems);
    let trust = Module::load(&trust_policy_dir());
    // (case, --role-name, the other flags)
    let settings: [(&str, Option<&str>, &[&str]); 3] = [
        (
            "everything_given",
            Some("shop-app"),
            &[
                "--issuer-url",
                "https://oidc.example.com/clusters/prod/",
                "--service-account",
                "shop/app",
                "--service-account",
                "shop/worker",
                "--audience",
                "sts.amazonaws.com",
                "--audience",
                "irsa.example.com",
                "--account-id",
                "111122223333",
                "--partition",
                "aws-cn",
            ],
        ),
        (
            "defaults",
            Some("team-readers"),
            &[
                "--issuer-url",
                "https://oidc.example.com",
                "--service-account",
                "team/*",
            ],
        ),
        (
            "no_role_name",
            None,
            &[
                "--issuer-url",
                "https://oidc.example.com:8443",
                "--service-account",
                "shop/app",
                "--service-account",
                "ci-?/runner",
                "--partition",
                "aws-us-gov",
            ],
        ),
    ];
    let mut calls = Vec::new();
    for (name, role_name, flags) in settings {
        let flags: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        let mut with_name = flags.clone();
        if let Some(role_name) = role_name {
            with_name.extend(["--role-name".to_owned(), role_name.to_owned()]);
        }
        let block = cli_terraform(&with_name);
        let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
        assert_eq!(
            (block.identifier.as_str(), labels.as_slice()),
            ("module", ["irsa_role"].as_slice()),
            "{name}: expected module \"irsa_role\""
        );
        assert_eq!(
            block.body.blocks().count(),
            0,
            "{name}: nested blocks in {block:?}"
        );
        let attributes: BTreeMap<&str, &Expression> = block
            .body
            .attributes()
            .map(|a| (a.key.as_str(), &a.expr))
            .collect();
        match attributes.get("source") {
            Some(Expression::String(source)) => assert!(
                source.ends_with("/terraform/modules/role"),
                "{name}: source {source:?} is not this repository's terraform/modules/role"
            ),
            other => panic!("{name}: source is not a string: {other:?}"),
        }
        let given: BTreeSet<&str> = attributes
            .keys()
            .copied()
            .filter(|k| *k != "source")
            .collect();
        let problems = role.check_call(&given);
        assert!(
            problems.is_empty(),
            "{name}: module \"irsa_role\" does not fit terraform/modules/role/variables.tf: {}",
            problems.join("; ")
        );
        assert_eq!(
            attributes.get("name"),
            Some(&&Expression::from(role_name.unwrap_or("ROLE_NAME"))),
            "{name}: the role's name"
        );
        // modules/role hands these to modules/trust-policy under the same names.
        let arguments: Vec<Attribute> = block
            .body
            .attributes()
            .filter(|a| !["source", "name"].contains(&a.key.as_str()))
            .cloned()
            .collect();
        let keys: BTreeSet<&str> = arguments.iter().map(|a| a.key.as_str()).collect();
        let problems = trust.check_call(&keys);
        assert!(
            problems.is_empty(),
            "{name}: modules/trust-policy cannot take them: {}",
            problems.join("; ")
        );
        calls.push((name.to_owned(), arguments, flags));
    }
    let module = module_policies(
        &calls
            .iter()
            .map(|(name, arguments, _)| (name.clone(), arguments.clone()))
            .collect::<Vec<_>>(),
    );
    for (name, _, flags) in &calls {
        let cli = cli_policy(flags);
        assert!(
            cli == module[name],
            "{name}: the policy of irsa-webhook trust-policy {flags:?} and that of \
             modules/trust-policy given --format terraform's values differ:\n\
             command:\n{}\nmodule:\n{}",
            pretty(&cli),
            pretty(&module[name])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The static check.

/// A directory of `*.tf` files, parsed, with what it declares.
struct Module {
    dir: PathBuf,
    /// (file name, body)
    files: Vec<(String, Body)>,
    /// name => whether it must be given (no default)
    variables: BTreeMap<String, bool>,
    locals: BTreeSet<String>,
    /// name => the module block
    modules: BTreeMap<String, Block>,
    data: BTreeSet<(String, String)>,
    resources: BTreeSet<(String, String)>,
    outputs: BTreeSet<String>,
    /// Files that do not parse, blocks without their labels.
    problems: Vec<String>,
}

/// The arguments of a module block that are not the module's variables.
const MODULE_META_ARGUMENTS: &[&str] = &[
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

fn labels(block: &Block) -> Vec<&str> {
    block.labels.iter().map(|l| l.as_str()).collect()
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

/// A string value of an object expression (`{ source = "hashicorp/aws" }`).
fn object_string<'a>(expr: &'a Expression, key: &str) -> Option<&'a str> {
    let Expression::Object(object) = expr else {
        return None;
    };
    object.iter().find_map(|(k, v)| {
        let name = match k {
            ObjectKey::Identifier(id) => id.as_str(),
            ObjectKey::Expression(Expression::String(s)) => s.as_str(),
            _ => return None,
        };
        match v {
            Expression::String(s) if name == key => Some(s.as_str()),
            _ => None,
        }
    })
}

impl Module {
    fn load(dir: &Path) -> Module {
        let mut module = Module {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            variables: BTreeMap::new(),
            locals: BTreeSet::new(),
            modules: BTreeMap::new(),
            data: BTreeSet::new(),
            resources: BTreeSet::new(),
            outputs: BTreeSet::new(),
            problems: Vec::new(),
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tf"))
            .collect();
        names.sort();
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            match hcl::parse(&text) {
                Ok(body) => module.files.push((name, body)),
                Err(e) => module.problems.push(format!("{name}: does not parse: {e}")),
            }
        }
        if module.files.is_empty() && module.problems.is_empty() {
            module.problems.push("no *.tf files".to_owned());
        }
        for (file, body) in &module.files {
            for block in body.blocks() {
                let l = labels(block);
                let wanted = match block.identifier.as_str() {
                    "variable" | "module" | "output" | "provider" => 1,
                    "resource" | "data" => 2,
                    _ => 0,
                };
                if l.len() != wanted {
                    module.problems.push(format!(
                        "{file}: {} block with labels {l:?}, expected {wanted}",
                        block.identifier
                    ));
                    continue;
                }
                match block.identifier.as_str() {
                    "variable" => {
                        let required = attribute(&block.body, "default").is_none();
                        module.variables.insert(l[0].to_owned(), required);
                    }
                    "locals" => module
                        .locals
                        .extend(block.body.attributes().map(|a| a.key.as_str().to_owned())),
                    "module" => {
                        module.modules.insert(l[0].to_owned(), block.clone());
                    }
                    "output" => {
                        module.outputs.insert(l[0].to_owned());
                    }
                    "data" => {
                        module.data.insert((l[0].to_owned(), l[1].to_owned()));
                    }
                    "resource" => {
                        module.resources.insert((l[0].to_owned(), l[1].to_owned()));
                    }
                    _ => {}
                }
            }
        }
        module
    }

    /// `modules/role` of `.../examples/basic/../../modules/role`.
    fn name(&self) -> String {
        let parts: Vec<_> = self.dir.iter().map(|p| p.to_string_lossy()).collect();
        parts[parts.len().saturating_sub(2)..].join("/")
    }

    /// What is wrong with a call of this module that gives these arguments (no meta-arguments).
    fn check_call(&self, given: &BTreeSet<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        for argument in given {
            if !self.variables.contains_key(*argument) {
                problems.push(format!(
                    "argument {argument} is not a variable of {} (its variables: {})",
                    self.name(),
                    self.variables
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (variable, required) in &self.variables {
            if *required && !given.contains(variable.as_str()) {
                problems.push(format!(
                    "variable {variable} of {} has no default and is not given",
                    self.name()
                ));
            }
        }
        problems
    }

    fn blocks<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Block)> + 'a {
        self.files.iter().flat_map(move |(file, body)| {
            body.blocks()
                .filter(move |b| b.identifier.as_str() == kind)
                .map(move |b| (file.as_str(), b))
        })
    }

    /// Everything the static check finds wrong, one message each, prefixed by the file.
    fn check(&self) -> Vec<String> {
        let mut problems = self.problems.clone();
        let uses_aws = self
            .resources
            .iter()
            .chain(&self.data)
            .any(|(t, _)| t.starts_with("aws_"))
            || self.blocks("provider").any(|(_, b)| labels(b) == ["aws"]);

        // References.
        for (file, body) in &self.files {
            let mut refs = References::default();
            refs.body(body);
            problems.extend(refs.errors.iter().map(|e| format!("{file}: {e}")));
            for path in &refs.paths {
                if let Some(problem) = self.check_reference(path) {
                    problems.push(format!("{file}: {problem}"));
                }
            }
        }

        // Variables and outputs say what they are.
        for (file, block) in self.blocks("variable") {
            for key in ["description", "type"] {
                if attribute(&block.body, key).is_none() {
                    problems.push(format!(
                        "{file}: variable {} has no {key}",
                        labels(block)[0]
                    ));
                }
            }
        }
        for (file, block) in self.blocks("output") {
            if attribute(&block.body, "description").is_none() {
                problems.push(format!(
                    "{file}: output {} has no description",
                    labels(block)[0]
                ));
            }
        }

        // Module calls.
        for (file, block) in self.blocks("module") {
            let name = labels(block)[0];
            let source = match attribute(&block.body, "source") {
                Some(Expression::String(source)) => source,
                other => {
                    problems.push(format!(
                        "{file}: module {name}: source is not a literal string: {other:?}"
                    ));
                    continue;
                }
            };
            if !(source.starts_with("./") || source.starts_with("../")) {
                continue;
            }
            let target = self.dir.join(source);
            if !target.is_dir() {
                problems.push(format!(
                    "{file}: module {name}: source {source} is not a directory ({})",
                    target.display()
                ));
                continue;
            }
            let called = Module::load(&target);
            let given: BTreeSet<&str> = block
                .body
                .attributes()
                .map(|a| a.key.as_str())
                .filter(|k| !MODULE_META_ARGUMENTS.contains(k))
                .collect();
            problems.extend(
                called
                    .check_call(&given)
                    .into_iter()
                    .map(|p| format!("{file}: module {name}: {p}")),
            );
        }

        // Providers.
        let terraform: Vec<&Block> = self.blocks("terraform").map(|(_, b)| b).collect();
        if terraform.is_empty() {
            problems.push("no terraform block (required_version)".to_owned());
        }
        if !terraform
            .iter()
            .any(|b| attribute(&b.body, "required_version").is_some())
        {
            problems.push("terraform { required_version } is not set".to_owned());
        }
        let required_providers: Vec<&Block> = terraform
            .iter()
            .flat_map(|b| b.body.blocks())
            .filter(|b| b.identifier.as_str() == "required_providers")
            .collect();
        let aws = required_providers
            .iter()
            .find_map(|b| attribute(&b.body, "aws"));
        if uses_aws {
            match aws {
                None => problems.push(
                    "uses aws_ resources or the aws provider, but required_providers does not \
                     declare aws"
                        .to_owned(),
                ),
                Some(aws) => {
                    if object_string(aws, "source") != Some("hashicorp/aws") {
                        problems.push(format!(
                            "required_providers: aws's source must be \"hashicorp/aws\": {aws:?}"
                        ));
                    }
                    if object_string(aws, "version").is_none_or(|v| v.trim().is_empty()) {
                        problems.push(format!(
                            "required_providers: aws has no version constraint: {aws:?}"
                        ));
                    }
                }
            }
        }
        problems
    }

    /// `var.X`, `local.X`, `module.X(.OUTPUT)`, `data.T.N` and `aws_T.N`, if not declared.
    fn check_reference(&self, path: &[String]) -> Option<String> {
        let text = path.join(".");
        let names = |set: &mut dyn Iterator<Item = String>| set.collect::<Vec<_>>().join(", ");
        match path {
            [root, name, ..] if root == "var" => (!self.variables.contains_key(name)).then(|| {
                format!(
                    "{text}: no variable {name} (declared: {})",
                    names(&mut self.variables.keys().cloned())
                )
            }),
            [root, name, ..] if root == "local" => (!self.locals.contains(name)).then(|| {
                format!(
                    "{text}: no local {name} (declared: {})",
                    names(&mut self.locals.iter().cloned())
                )
            }),
            [root, name, rest @ ..] if root == "module" => {
                let Some(block) = self.modules.get(name) else {
                    return Some(format!(
                        "{text}: no module block {name} (declared: {})",
                        names(&mut self.modules.keys().cloned())
                    ));
                };
                let source = match attribute(&block.body, "source") {
                    Some(Expression::String(s)) if s.starts_with("./") || s.starts_with("../") => s,
                    _ => return None,
                };
                let output = rest.first()?;
                // A missing directory is reported once, by the check of the module block.
                let dir = self.dir.join(source);
                if !dir.is_dir() {
                    return None;
                }
                let called = Module::load(&dir);
                (!called.outputs.contains(output)).then(|| {
                    format!(
                        "{text}: module {name} ({source}) has no output {output} (its outputs: {})",
                        names(&mut called.outputs.iter().cloned())
                    )
                })
            }
            [root, kind, name, ..] if root == "data" => {
                (!self.data.contains(&(kind.clone(), name.clone())))
                    .then(|| format!("{text}: no data \"{kind}\" \"{name}\" block"))
            }
            [root, ..] if root == "data" => Some(format!("{text}: incomplete data reference")),
            [kind, name, ..] if kind.starts_with("aws_") => {
                (!self.resources.contains(&(kind.clone(), name.clone())))
                    .then(|| format!("{text}: no resource \"{kind}\" \"{name}\" block"))
            }
            [kind] if kind.starts_with("aws_") => {
                Some(format!("{text}: a resource type without a name"))
            }
            _ => None,
        }
    }
}

/// The references of expressions: a variable and the attribute names right after it
/// (`var.x`, `data.aws_partition.current` of `data.aws_partition.current[0].partition`), found
/// by walking hcl-rs's expression tree, templates (`"${var.x}"`, heredocs) included.
#[derive(Default)]
struct References {
    paths: Vec<Vec<String>>,
    errors: Vec<String>,
}

impl References {
    fn body(&mut self, body: &Body) {
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attribute) => self.expr(&attribute.expr),
                Structure::Block(block) => self.body(&block.body),
            }
        }
    }

    fn expr(&mut self, expr: &Expression) {
        match expr {
            Expression::Array(items) => items.iter().for_each(|e| self.expr(e)),
            Expression::Object(object) => {
                for (key, value) in object {
                    if let ObjectKey::Expression(key) = key {
                        self.expr(key);
                    }
                    self.expr(value);
                }
            }
            Expression::TemplateExpr(template) => self.template_expr(template),
            Expression::Variable(variable) => self.paths.push(vec![variable.to_string()]),
            Expression::Traversal(traversal) => self.traversal(traversal),
            Expression::FuncCall(call) => call.args.iter().for_each(|e| self.expr(e)),
            Expression::Parenthesis(inner) => self.expr(inner),
            Expression::Conditional(c) => {
                self.expr(&c.cond_expr);
                self.expr(&c.true_expr);
                self.expr(&c.false_expr);
            }
            Expression::Operation(operation) => match operation.as_ref() {
                Operation::Unary(op) => self.expr(&op.expr),
                Operation::Binary(op) => {
                    self.expr(&op.lhs_expr);
                    self.expr(&op.rhs_expr);
                }
            },
            Expression::ForExpr(f) => {
                self.expr(&f.collection_expr);
                if let Some(key) = &f.key_expr {
                    self.expr(key);
                }
                self.expr(&f.value_expr);
                if let Some(cond) = &f.cond_expr {
                    self.expr(cond);
                }
            }
            // Null, Bool, Number, String: no references.
            _ => {}
        }
    }

    fn traversal(&mut self, traversal: &Traversal) {
        for operator in &traversal.operators {
            if let TraversalOperator::Index(index) = operator {
                self.expr(index);
            }
        }
        let Expression::Variable(root) = &traversal.expr else {
            self.expr(&traversal.expr);
            return;
        };
        let mut path = vec![root.to_string()];
        for operator in &traversal.operators {
            match operator {
                TraversalOperator::GetAttr(name) => path.push(name.to_string()),
                _ => break,
            }
        }
        self.paths.push(path);
    }

    fn template_expr(&mut self, expr: &TemplateExpr) {
        match Template::from_expr(expr) {
            Ok(template) => self.template(&template),
            Err(e) => self
                .errors
                .push(format!("template {expr:?} does not parse: {e}")),
        }
    }

    fn template(&mut self, template: &Template) {
        for element in template.elements() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(interpolation) => self.expr(&interpolation.expr),
                Element::Directive(directive) => match directive.as_ref() {
                    Directive::If(d) => {
                        self.expr(&d.cond_expr);
                        self.template(&d.true_template);
                        if let Some(f) = &d.false_template {
                            self.template(f);
                        }
                    }
                    Directive::For(d) => {
                        self.expr(&d.collection_expr);
                        self.template(&d.template);
                    }
                },
            }
        }
    }
}

/// The modules and examples: every directory under terraform/modules and terraform/examples.
fn module_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for parent in ["modules", "examples"] {
        for entry in std::fs::read_dir(terraform_dir().join(parent)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn every_module_and_example_passes_the_static_check() {
    let dirs = module_dirs();
    for expected in [
        "modules/trust-policy",
        "modules/oidc-provider",
        "modules/role",
        "examples/basic",
    ] {
        assert!(
            dirs.contains(&terraform_dir().join(expected)),
            "terraform/{expected} is missing"
        );
    }
    let mut problems = Vec::new();
    for dir in &dirs {
        let module = Module::load(dir);
        let shown = dir.strip_prefix(repo()).unwrap().display().to_string();
        problems.extend(module.check().into_iter().map(|p| format!("{shown}: {p}")));
    }
    assert!(
        problems.is_empty(),
        "static check of terraform/:\n{}",
        problems.join("\n")
    );
}

#[test]
fn trust_policy_module_stays_provider_free() {
    // So that its tests and the comparison with the command run offline.
    let module = Module::load(&trust_policy_dir());
    assert!(module.resources.is_empty(), "{:?}", module.resources);
    assert!(module.data.is_empty(), "{:?}", module.data);
    let providers: Vec<_> = module
        .blocks("provider")
        .chain(module.blocks("terraform").flat_map(|(file, b)| {
            b.body
                .blocks()
                .filter(|b| b.identifier.as_str() == "required_providers")
                .map(move |b| (file, b))
        }))
        .map(|(file, _)| file)
        .collect();
    assert!(
        providers.is_empty(),
        "modules/trust-policy declares providers in {providers:?}"
    );
}

/// Copies terraform/ into a temp dir, with `edit` of `file` (relative to terraform/) replacing
/// `from` by `to`, and returns the static check's problems of `dir`.
fn problems_after_edit(dir: &str, file: &str, from: &str, to: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("terraform");
    for path in tree(&terraform_dir()) {
        let target = copy.join(path.strip_prefix(terraform_dir()).unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&path, &target).unwrap();
        }
    }
    let edited = copy.join(file);
    let text = std::fs::read_to_string(&edited).unwrap();
    assert!(
        text.contains(from),
        "terraform/{file} no longer holds {from:?}: update this test"
    );
    std::fs::write(&edited, text.replacen(from, to, 1)).unwrap();
    Module::load(&copy.join(dir)).check()
}

#[test]
fn static_check_reports_each_kind_of_mistake() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "modules/role",
            "modules/role/main.tf",
            "name                 = var.name",
            "name                 = var.nmae",
            "main.tf: var.nmae: no variable nmae (declared: ",
        ),
        (
            "modules/trust-policy",
            "modules/trust-policy/main.tf",
            "Principal = { Federated = local.provider_arn }",
            "Principal = { Federated = \"${local.provider_ar}\" }",
            "main.tf: local.provider_ar: no local provider_ar (declared: ",
        ),
        (
            "modules/role",
            "modules/role/main.tf",
            "assume_role_policy   = module.trust_policy.json",
            "assume_role_policy   = module.trust.json",
            "main.tf: module.trust.json: no module block trust (declared: trust_policy)",
        ),
        (
            "modules/role",
            "modules/role/outputs.tf",
            "value       = module.trust_policy.json",
            "value       = module.trust_policy.jsn",
            "outputs.tf: module.trust_policy.jsn: module trust_policy (../trust-policy) has no output jsn",
        ),
        (
            "modules/role",
            "modules/role/main.tf",
            "data.aws_caller_identity.current[0].account_id",
            "data.aws_caller_identity.this[0].account_id",
            "main.tf: data.aws_caller_identity.this: no data \"aws_caller_identity\" \"this\" block",
        ),
        (
            "modules/role",
            "modules/role/main.tf",
            "role       = aws_iam_role.this.name",
            "role       = aws_iam_role.that.name",
            "main.tf: aws_iam_role.that.name: no resource \"aws_iam_role\" \"that\" block",
        ),
        (
            "modules/role",
            "modules/role/main.tf",
            "  audiences        = var.audiences\n",
            "  audiences        = var.audiences\n  audience         = var.audiences\n",
            "main.tf: module trust_policy: argument audience is not a variable of ",
        ),
        (
            "examples/basic",
            "examples/basic/main.tf",
            "  issuer_url = var.issuer_url\n",
            "",
            "main.tf: module oidc_provider: variable issuer_url of ",
        ),
        (
            "examples/basic",
            "examples/basic/main.tf",
            "../../modules/oidc-provider",
            "../../modules/oidc-providers",
            "main.tf: module oidc_provider: source ../../modules/oidc-providers is not a directory",
        ),
        (
            "modules/oidc-provider",
            "modules/oidc-provider/variables.tf",
            "  description = \"Tags of the OIDC provider.\"\n",
            "",
            "variables.tf: variable tags has no description",
        ),
        (
            "modules/oidc-provider",
            "modules/oidc-provider/variables.tf",
            "  type        = map(string)\n",
            "",
            "variables.tf: variable tags has no type",
        ),
        (
            "examples/basic",
            "examples/basic/outputs.tf",
            "  description = \"ARN of the role.\"\n",
            "",
            "outputs.tf: output role_arn has no description",
        ),
        (
            "modules/role",
            "modules/role/versions.tf",
            "      version = \">= 5.0\"\n",
            "",
            "required_providers: aws has no version constraint",
        ),
        (
            "modules/role",
            "modules/role/versions.tf",
            "source  = \"hashicorp/aws\"",
            "source  = \"hashicorp/aws-beta\"",
            "required_providers: aws's source must be \"hashicorp/aws\"",
        ),
        (
            "examples/basic",
            "examples/basic/versions.tf",
            "    aws = {",
            "    awz = {",
            "required_providers does not declare aws",
        ),
        (
            "modules/oidc-provider",
            "modules/oidc-provider/outputs.tf",
            "  value       = local.provider\n",
            "  value       = <<-EOT\n    ${local.provider}%{if var.tgs != null}x%{endif}\n  EOT\n",
            "outputs.tf: var.tgs: no variable tgs",
        ),
        (
            "modules/trust-policy",
            "modules/trust-policy/outputs.tf",
            "output \"wildcard\" {",
            "output \"wildcard\" {{",
            "outputs.tf: does not parse",
        ),
    ];
    for (dir, file, from, to, expected) in cases {
        let problems = problems_after_edit(dir, file, from, to);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "after replacing {from:?} by {to:?} in terraform/{file}, expected a problem with \
             {expected:?}, got: {problems:#?}"
        );
    }
}
