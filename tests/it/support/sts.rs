//! AWS on loopback for the end-to-end tests: moto's server mode plays IAM and STS, and the AWS
//! CLI v1 from PyPI is the unchanged AWS SDK. Both come from the virtualenv that
//! `tests/python/install.sh` makes.
//!
//! moto records every request it gets (`MOTO_ENABLE_RECORDING`), so a test can see what the SDK
//! actually sent: moto itself checks almost nothing (see [`Moto`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::cluster::Guarded;
use super::{free_port, http_get};

/// The account moto puts everything in.
pub const ACCOUNT: &str = "123456789012";

/// Longest run of one `aws` command (moto answers in milliseconds; the CLI starts in ~1 s).
const AWS_TIMEOUT: &str = "60";

/// The virtualenv with `moto_server` and `aws`: `$IRSA_PYTHON_VENV`, else what
/// `tests/python/install.sh` prints (it creates the virtualenv on first use).
pub fn venv() -> PathBuf {
    super::installed(
        "IRSA_PYTHON_VENV",
        "tests/python/install.sh",
        "the end-to-end tests need python3 and PyPI to install moto and the AWS CLI",
    )
}

/// moto's server mode on a free loopback port; stops when dropped or when the test process
/// exits.
///
/// What moto checks and what it does not: `AssumeRoleWithWebIdentity` takes the `RoleArn` and
/// `RoleSessionName` and hands out credentials. It does not decode or verify the token, does not
/// look up the OIDC provider, does not require the role to exist and does not evaluate its trust
/// policy. Requests signed with the credentials it issued are attributed to the assumed role
/// (`GetCallerIdentity`) but their signatures are not verified. The checks STS makes are
/// therefore made by the tests themselves: the signature, `iss`, `aud`, `exp` and `sub` through
/// the discovery server (`support::discovery::RelyingParty`), and the trust policy's conditions
/// against the verified claims. Where this crate signs requests itself (IAM, STS and S3 for
/// `doctor` and the S3 export), [`Moto::start_verifying`] makes a moto that checks them.
pub struct Moto {
    pub endpoint: String,
    /// The access key ID and secret that [`Moto::admin`] signs with.
    keys: (String, String),
    venv: PathBuf,
    home: PathBuf,
    recording: PathBuf,
    _process: Guarded,
}

/// One request moto received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: BTreeMap<String, String>,
    /// The form parameters of the query protocol (`Action`, `RoleArn`, ...).
    pub form: BTreeMap<String, String>,
}

impl Moto {
    /// Starts `moto_server` from `venv` on loopback and waits until it answers.
    pub fn start(venv: &Path) -> Self {
        Self::start_on(venv, [127, 0, 0, 1].into())
    }

    /// Starts `moto_server` listening on `host` (an address of this machine, such as a real
    /// node's, where pods reach it) and waits until it answers.
    pub fn start_on(venv: &Path, host: std::net::IpAddr) -> Self {
        Self::spawn(venv, host, &[])
    }

    /// A moto that verifies every request's SigV4 signature as AWS does (recomputed with
    /// botocore from the request it received) and evaluates the caller's IAM policies: after
    /// three unsigned calls that make user `admin` with an allow-all policy and an access key,
    /// only that key (see [`Moto::credentials`]) is accepted.
    pub fn start_verifying(venv: &Path) -> Self {
        const SETUP_CALLS: usize = 3;
        let mut moto = Self::spawn(
            venv,
            [127, 0, 0, 1].into(),
            &[format!("INITIAL_NO_AUTH_ACTION_COUNT={SETUP_CALLS}")],
        );
        moto.admin(&["iam", "create-user", "--user-name", "admin"]);
        moto.admin(&[
            "iam",
            "put-user-policy",
            "--user-name",
            "admin",
            "--policy-name",
            "everything",
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        ]);
        let key = moto.admin(&["iam", "create-access-key", "--user-name", "admin"]);
        let field = |name: &str| key["AccessKey"][name].as_str().unwrap().to_owned();
        moto.keys = (field("AccessKeyId"), field("SecretAccessKey"));
        let me = moto.admin(&["sts", "get-caller-identity"]);
        assert_eq!(me["Arn"], format!("arn:aws:iam::{ACCOUNT}:user/admin"));
        moto
    }

    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` for a client that [`Moto::admin`]'s
    /// key signs for.
    pub fn credentials(&self) -> [(&'static str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", &self.keys.0),
            ("AWS_SECRET_ACCESS_KEY", &self.keys.1),
        ]
    }

    fn spawn(venv: &Path, host: std::net::IpAddr, env: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("irsa-moto-")
            .tempdir()
            .unwrap()
            .keep();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let recording = dir.join("recording.jsonl");
        let log = dir.join("moto.log");
        let port = free_port();
        // `env` execs moto_server, so the guard's kill reaches moto itself.
        let mut args = vec![
            "MOTO_ENABLE_RECORDING=true".to_owned(),
            format!("MOTO_RECORDER_FILEPATH={}", recording.display()),
        ];
        args.extend_from_slice(env);
        args.extend([
            venv.join("bin/moto_server").display().to_string(),
            "-H".into(),
            host.to_string(),
            "-p".into(),
            port.to_string(),
        ]);
        let process = Guarded::spawn(Path::new("/usr/bin/env"), &args, &log, Some(&dir));
        let addr = SocketAddr::from((host, port));
        let started = Instant::now();
        while !matches!(http_get(addr, "/moto-api/"), Ok((200, _))) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer within 60 s; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            endpoint: format!("http://{addr}"),
            keys: ("testing".into(), "testing".into()),
            venv: venv.to_owned(),
            home,
            recording,
            _process: process,
        }
    }

    /// Runs `aws args --output json` as moto's administrator (dummy static keys, or `admin`'s
    /// of a verifying moto); returns the parsed answer (null when there is none) and panics on
    /// failure.
    pub fn admin(&self, args: &[&str]) -> Value {
        let [id, secret] = self.credentials();
        let output = self.aws(
            &[
                id,
                secret,
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL", &self.endpoint),
            ],
            args,
        );
        assert!(
            output.status.success(),
            "aws {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Runs `aws args --output json` with exactly `env` plus PATH and a HOME of its own (so no
    /// `~/.aws` of the machine leaks in), bounded by a timeout.
    pub fn aws(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let aws = self.venv.join("bin/aws");
        Command::new("timeout")
            .args(["--kill-after=5", AWS_TIMEOUT])
            .arg(&aws)
            .args(args)
            .args(["--output", "json"])
            .env_clear()
            .env("PATH", path(&self.venv))
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the aws CLI")
    }

    /// The STS endpoint the CLI of this virtualenv resolves from exactly `env` (no network):
    /// shows what the region variables alone make an SDK do.
    pub fn resolved_sts_endpoint(&self, env: &[(&str, &str)]) -> String {
        let mut python = Command::new("timeout");
        python
            .arg(AWS_TIMEOUT)
            .arg(self.venv.join("bin/python"))
            .args([
                "-c",
                // The CLI v1 ships its own botocore as awscli.botocore.
                "from awscli.botocore.session import get_session\n\
                 print(get_session().create_client('sts').meta.endpoint_url)",
            ])
            .env_clear()
            .env("PATH", path(&self.venv))
            .env("HOME", &self.home)
            .envs(env.iter().copied());
        super::run(python, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_owned()
    }

    /// The requests moto received so far for `action` (e.g. `AssumeRoleWithWebIdentity`).
    pub fn requests(&self, action: &str) -> Vec<Recorded> {
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        text.lines()
            .map(|line| {
                let entry: Value = serde_json::from_str(line).unwrap();
                let body = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"] == true {
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap()
                } else {
                    body.as_bytes().to_vec()
                };
                let headers = entry["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_owned()))
                    .collect();
                Recorded {
                    headers,
                    form: parse_form(&String::from_utf8_lossy(&body)),
                }
            })
            .filter(|r| r.form.get("Action").is_some_and(|a| a == action))
            .collect()
    }
}

fn path(venv: &Path) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        venv.join("bin").display()
    )
}

/// `application/x-www-form-urlencoded` → name/value pairs.
pub fn parse_form(body: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
