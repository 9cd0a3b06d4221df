//! A real single-node cluster for end-to-end tests: `tests/cluster/node/node.sh` starts etcd,
//! the control plane, containerd and a kubelet on this machine; pods really run.
//!
//! A guard process reads a pipe from this test process: when the process exits (normally or
//! after a panic) the pipe closes and the guard runs `node.sh down`, which stops everything and
//! restores what the node changed on the host.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::bin_dir;
use super::run;

/// The scripts of the node.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/node")
}

/// A running node and its control plane.
pub struct Node {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The node's address: the pod network's gateway, where pods reach the host.
    pub ip: String,
    pub api_url: String,
    pub bin: PathBuf,
    guard: Option<(Child, ChildStdin)>,
}

impl Node {
    /// Builds what is missing (cached), starts the node and imports `images` (OCI archives);
    /// panics with the reason when it cannot.
    pub fn start(images: &[&Path]) -> Self {
        let uid = run(
            {
                let mut id = Command::new("id");
                id.arg("-u");
                id
            },
            None,
        )
        .unwrap();
        assert_eq!(
            uid.trim(),
            "0",
            "the real-node tests run containers and change the network: run them as root"
        );
        let bin = bin_dir();
        let images_dir = super::installed(
            "IRSA_NODE_IMAGES",
            "tests/cluster/node/install.sh",
            "the real node needs root, Debian's packages and PyPI",
        );
        let dir = tempfile::Builder::new()
            .prefix("irsa-node-")
            .tempdir()
            .unwrap()
            .keep();
        // Started first, so that even a failed start is undone.
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg("read -r _; exec bash \"$0\" down \"$1\" >>\"$1.down.log\" 2>&1")
            .arg(scripts().join("node.sh"))
            .arg(&dir)
            .env("IRSA_BIN_DIR", &bin)
            .stdin(Stdio::piped())
            .spawn()
            .expect("cannot start the node's guard");
        let stdin = guard.stdin.take().unwrap();
        let mut up = Command::new("bash");
        up.arg(scripts().join("node.sh"))
            .arg("up")
            .arg(&dir)
            .arg(images_dir.join("aws-cli.tar"))
            .args(images)
            .env("IRSA_BIN_DIR", &bin)
            .env("IRSA_NODE_IMAGES", &images_dir);
        run(up, None).unwrap_or_else(|e| panic!("{e}"));
        let mut node = Self::attach(&dir);
        node.guard = Some((guard, stdin));
        node
    }

    /// The node that `node.sh up` runs in `dir` (`scripts/dev-cluster.sh`'s, say), without
    /// taking charge of it: it keeps running when this is dropped.
    pub fn attach(dir: &Path) -> Self {
        let env = std::fs::read_to_string(dir.join("node.env"))
            .unwrap_or_else(|e| panic!("no node in {}: {e}", dir.display()));
        let field = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in node.env"))
                .to_owned()
        };
        Self {
            kubeconfig: dir.join("kubeconfig"),
            ip: field("NODE_IP"),
            api_url: field("API_URL"),
            bin: PathBuf::from(field("BIN")),
            dir: dir.to_owned(),
            guard: None,
        }
    }

    /// `ctr ARGS` against the node's containerd, in the `k8s.io` namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(self.bin.join("ctr"));
        command
            .arg("--address")
            .arg(self.dir.join("containerd/containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args);
        run(command, None)
    }

    /// Stops the API server (SIGTERM) and starts it again; returns once it is ready.
    pub fn restart_apiserver(&self) {
        let mut restart = Command::new("bash");
        restart
            .arg(scripts().join("node.sh"))
            .arg("restart")
            .arg(&self.dir)
            .arg("kube-apiserver");
        run(restart, None).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kubectl ARGS` against the node: stdout, or the error output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(self.bin.join("kubectl"));
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        run(command, None)
    }

    /// `kubectl ARGS -o json`, parsed; panics on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// `kubectl apply` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        let mut command = Command::new(self.bin.join("kubectl"));
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(["apply", "-f", "-"]);
        run(command, Some(yaml)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Polls `done` every 200 ms until it returns `Some`; panics with `what` and the state
    /// `describe` gives after `limit`.
    pub fn wait<T>(&self, what: &str, limit: Duration, mut done: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = done() {
                return value;
            }
            if started.elapsed() > limit {
                let pods = self
                    .kubectl(&["get", "pods", "-A", "-o", "wide"])
                    .unwrap_or_else(|e| e);
                let events = self
                    .kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
                    .unwrap_or_else(|e| e);
                panic!(
                    "{what}: not within {limit:?}\npods:\n{pods}\nevents:\n{events}\nnode logs: {}",
                    self.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the node now (it also stops when the test process exits).
    pub fn stop(&mut self) {
        if let Some((mut guard, mut stdin)) = self.guard.take() {
            let _ = stdin.write_all(b"down\n");
            drop(stdin);
            let _ = guard.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
