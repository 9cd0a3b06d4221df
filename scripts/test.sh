#!/usr/bin/env bash
# The one test command (README "Testing"): formatting, lints, unit, integration and end-to-end
# tests against a real kube-apiserver and etcd that tests/cluster/install.sh builds from the Go
# module proxy on first use and caches in ~/.cache/irsa-webhook.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# The one test command runs everything on the control plane and node it starts: variables that
# point the end-to-end tests at another cluster (README "Against your own cluster") would make
# tests that cannot run there skip, and a skip is not a pass.
for var in IRSA_E2E_KUBECONFIG IRSA_E2E_WEBHOOK_HOST IRSA_E2E_ALLOW_SKIPS; do
    [ -z "${!var+set}" ] || die "$var is set: the test command runs on its own control plane and never skips; unset it (to test your own cluster, run cargo test --test e2e as the README says)"
done

# Tools the tests call besides cargo and go.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v flock >/dev/null || missing+=(util-linux)
# tests/hostile.rs checks that curl's HTTP/2 client receives early answers.
command -v curl >/dev/null || missing+=(curl)
# The virtualenv for moto and the AWS CLI needs venv and ensurepip (python3-venv on Debian).
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
# tests/workflows.rs: actionlint checks the workflows' run: scripts with shellcheck.
command -v shellcheck >/dev/null || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    command -v apt-get >/dev/null || die "need ${missing[*]} and there is no apt-get; install them"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tests/real_node.rs: containerd, runc, the CNI plugins, iptables, conntrack, debootstrap; now, so
# that no two apt-get runs overlap (the node's images are built in the background below).
say "real-node packages: tests/cluster/node/install.sh --packages"
bash tests/cluster/node/install.sh --packages >/dev/null || die "tests/cluster/node/install.sh --packages failed (see above): the real-node test needs root and Debian's packages"
command -v cargo >/dev/null || die "cargo not found: install Rust (rustup)"
command -v go >/dev/null || die "go not found: the end-to-end tests build kube-apiserver and etcd with Go >= 1.26"

# The control plane builds (minutes, once) while Rust compiles; both are cached afterwards.
bin_out=$(mktemp)
venv_out=$(mktemp)
tools_out=$(mktemp)
terraform_out=$(mktemp)
actionlint_out=$(mktemp)
node_out=$(mktemp)
trap 'rm -f "$bin_out" "$venv_out" "$tools_out" "$terraform_out" "$actionlint_out" "$node_out"' EXIT
say "control plane: tests/cluster/install.sh (background)"
bash tests/cluster/install.sh >"$bin_out" &
install_pid=$!
# moto and the AWS CLI for tests/trust_chain.rs, in a virtualenv outside the work tree that is
# rebuilt only when tests/python/requirements.txt changes.
say "AWS stand-ins: tests/python/install.sh (background)"
bash tests/python/install.sh >"$venv_out" &
venv_pid=$!
# The images the real node's pods run (pause, aws-cli: Debian by debootstrap + the AWS CLI from
# PyPI), built once without Docker and cached; mostly downloads, so beside the Go builds.
say "real-node images: tests/cluster/node/install.sh (background)"
bash tests/cluster/node/install.sh >"$node_out" &
node_pid=$!
# helm 3, helm 4, kubeconform and the Kubernetes JSON schemas for tests/chart.rs, cached; built
# after the control plane rather than beside it, since both Go builds use every core.
say "chart tools: scripts/install-tools.sh (background, after the control plane)"
(while kill -0 "$install_pid" 2>/dev/null; do sleep 2; done; bash scripts/install-tools.sh) >"$tools_out" &
tools_pid=$!
# Terraform or OpenTofu for tests/terraform.rs: terraform or tofu on PATH, else OpenTofu built
# once from the Go module proxy and cached; after the chart tools, for the same reason.
say "terraform: scripts/install-terraform.sh (background, after the chart tools)"
(while kill -0 "$tools_pid" 2>/dev/null; do sleep 2; done; bash scripts/install-terraform.sh) >"$terraform_out" &
terraform_pid=$!
# actionlint (and Debian's shellcheck) for tests/workflows.rs: the GitHub workflows cannot run
# here, so they are linted; built once from the Go module proxy and cached, after terraform for
# the same reason.
say "actionlint: scripts/install-actionlint.sh (background, after terraform)"
(while kill -0 "$terraform_pid" 2>/dev/null; do sleep 2; done; bash scripts/install-actionlint.sh) >"$actionlint_out" &
actionlint_pid=$!

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
say "cargo build --tests"
cargo test --locked --no-run --all-targets

# collect PID OUT VAR WHY: waits for a background install and exports VAR as the last line it
# printed; WHY says what the install needs when it failed.
collect() {
    wait "$1" || die "$4"
    printf -v "$3" '%s' "$(tail -n 1 "$2")"
    export "${3?}"
}

say "waiting for the control plane build"
collect "$install_pid" "$bin_out" IRSA_BIN_DIR "tests/cluster/install.sh failed (see above): Go and the Go module proxy are required"
[ -x "$IRSA_BIN_DIR/kube-apiserver" ] && [ -x "$IRSA_BIN_DIR/etcd" ] || die "no binaries in $IRSA_BIN_DIR"
collect "$venv_pid" "$venv_out" IRSA_PYTHON_VENV "tests/python/install.sh failed (see above): python3 and PyPI are required"
[ -x "$IRSA_PYTHON_VENV/bin/aws" ] && [ -x "$IRSA_PYTHON_VENV/bin/moto_server" ] || die "no aws or moto_server in $IRSA_PYTHON_VENV"
collect "$tools_pid" "$tools_out" IRSA_TOOLS_DIR "scripts/install-tools.sh failed (see above): Go, the Go module proxy, python3 and PyPI are required"
[ -x "$IRSA_TOOLS_DIR/helm" ] && [ -x "$IRSA_TOOLS_DIR/kubeconform" ] || die "no helm or kubeconform in $IRSA_TOOLS_DIR"
collect "$terraform_pid" "$terraform_out" IRSA_TERRAFORM "scripts/install-terraform.sh failed (see above): put terraform or tofu 1.6+ on PATH, or let it build OpenTofu with Go and the Go module proxy"
[ -n "$IRSA_TERRAFORM" ] && [ -x "$IRSA_TERRAFORM" ] || die "scripts/install-terraform.sh printed no executable: '$IRSA_TERRAFORM'"
collect "$actionlint_pid" "$actionlint_out" IRSA_ACTIONLINT "scripts/install-actionlint.sh failed (see above): Go and the Go module proxy (actionlint) and apt-get (shellcheck) are required"
[ -n "$IRSA_ACTIONLINT" ] && [ -x "$IRSA_ACTIONLINT" ] || die "scripts/install-actionlint.sh printed no executable: '$IRSA_ACTIONLINT'"
collect "$node_pid" "$node_out" IRSA_NODE_IMAGES "tests/cluster/node/install.sh failed (see above): root, Debian's packages and PyPI are required for the real-node test"
[ -f "$IRSA_NODE_IMAGES/pause.tar" ] && [ -f "$IRSA_NODE_IMAGES/aws-cli.tar" ] || die "no node images in '$IRSA_NODE_IMAGES'"

say "cargo test (unit, integration, end-to-end against $IRSA_BIN_DIR)"
cargo test --locked --all-targets
