#!/usr/bin/env bash
# The one test command (README "Testing"): formatting, lints, unit, integration and end-to-end
# tests against a real kube-apiserver and etcd that tests/cluster/install.sh builds from the Go
# module proxy on first use and caches in ~/.cache/irsa-webhook; every test on the newest
# Kubernetes pinned in tests/cluster/kubernetes/, then the end-to-end and real-node suites again
# on the oldest (README "Supported Kubernetes versions").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Cargo's build output is a cache like the others, outside the work tree: a fresh clone then
# rebuilds only this crate, not its few hundred dependencies. Each clone's path gets its own
# copy of this crate's artifacts (about 1 GB without incremental data), so the cache starts over
# beyond 15 GB.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/target}
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -sm "$CARGO_TARGET_DIR" | cut -f1)" -gt 15000 ]; then
    rm -rf "$CARGO_TARGET_DIR"
fi

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# The one test command runs everything on the control plane and node it starts: variables that
# point the end-to-end tests at another cluster (README "Against your own cluster") would make
# tests that cannot run there skip, and a skip is not a pass.
for var in IRSA_E2E_KUBECONFIG IRSA_E2E_WEBHOOK_HOST IRSA_E2E_ALLOW_SKIPS; do
    [ -z "${!var+set}" ] || die "$var is set: the test command runs on its own control plane and never skips; unset it (to test your own cluster, run cargo test --test it e2e:: as the README says)"
done

# Tools the tests call besides cargo and go.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v flock >/dev/null || missing+=(util-linux)
# tests/it/hostile.rs checks that curl's HTTP/2 client receives early answers.
command -v curl >/dev/null || missing+=(curl)
# benches/versus_reference.rs (its smoke pass runs here) loads both webhooks with h2load.
command -v h2load >/dev/null || missing+=(nghttp2-client)
# The virtualenv for moto and the AWS CLI needs venv and ensurepip (python3-venv on Debian).
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
# tests/it/workflows.rs: actionlint checks the workflows' run: scripts with shellcheck.
command -v shellcheck >/dev/null || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    command -v apt-get >/dev/null || die "need ${missing[*]} and there is no apt-get; install them"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tests/it/real_node.rs: containerd, runc, the CNI plugins, iptables, conntrack, debootstrap; now, so
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
targets_json=$(mktemp)
targets=$(mktemp)
modules=$(mktemp)
lanes=$(mktemp -d)
trap 'rm -rf "$bin_out" "$oldest_out" "$venv_out" "$tools_out" "$terraform_out" "$actionlint_out" "$node_out" "$targets_json" "$targets" "$modules" "$lanes"' EXIT
NEWEST=$(cd tests/cluster/kubernetes && ls -d v1.* | sort -V | tail -n 1)
OLDEST=$(cd tests/cluster/kubernetes && ls -d v1.* | sort -V | head -n 1)
oldest_out=$(mktemp)
say "control plane and node: tests/cluster/install.sh --version $NEWEST, then $OLDEST (background)"
bash tests/cluster/install.sh --version "$NEWEST" >"$bin_out" &
install_pid=$!
(while kill -0 "$install_pid" 2>/dev/null; do sleep 2; done; bash tests/cluster/install.sh --version "$OLDEST") >"$oldest_out" &
oldest_pid=$!
# moto and the AWS CLI for tests/it/trust_chain.rs, in a virtualenv outside the work tree that is
# rebuilt only when tests/python/requirements.txt changes.
say "AWS stand-ins: tests/python/install.sh (background)"
bash tests/python/install.sh >"$venv_out" &
venv_pid=$!
# The images the real node's pods run (pause, aws-cli: Debian by debootstrap + the AWS CLI from
# PyPI), built once without Docker and cached; mostly downloads, so beside the Go builds.
say "real-node images: tests/cluster/node/install.sh (background)"
bash tests/cluster/node/install.sh >"$node_out" &
node_pid=$!
# helm 3, helm 4, kubeconform and the Kubernetes JSON schemas for tests/it/chart.rs, cached; built
# after the control plane rather than beside it, since both Go builds use every core.
say "chart tools: scripts/install-tools.sh (background, after the control planes)"
(while kill -0 "$oldest_pid" 2>/dev/null; do sleep 2; done; bash scripts/install-tools.sh) >"$tools_out" &
tools_pid=$!
# Terraform or OpenTofu for tests/it/terraform.rs: terraform or tofu on PATH, else OpenTofu built
# once from the Go module proxy and cached; after the chart tools, for the same reason.
say "terraform: scripts/install-terraform.sh (background, after the chart tools)"
(while kill -0 "$tools_pid" 2>/dev/null; do sleep 2; done; bash scripts/install-terraform.sh) >"$terraform_out" &
terraform_pid=$!
# actionlint (and Debian's shellcheck) for tests/it/workflows.rs: the GitHub workflows cannot run
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
cargo test --locked --no-run --all-targets --message-format=json-render-diagnostics >"$targets_json"
# name<TAB>executable of every test target, as cargo test would run them.
python3 - "$targets_json" >"$targets" <<'PY' || die "cannot read cargo's list of test executables"
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(f"{m['target']['name']}\t{m['executable']}")
PY
[ -s "$targets" ] || die "cargo built no test executables"
# The integration tests are one executable (tests/it); its modules, one per subject, each run
# in a process of their own, as they did when each was an executable of its own.
it=$(awk -F '\t' '$1 == "it" { print $2; exit }' "$targets")
[ -n "$it" ] && [ -x "$it" ] || die "cargo built no integration-test executable (tests/it)"
"$it" --list | sed -n 's/^\([a-z0-9_]*\)::.*: test$/\1/p' | sort -u >"$modules"
[ -s "$modules" ] || die "$it lists no tests"

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

collect "$oldest_pid" "$oldest_out" IRSA_BIN_DIR_OLDEST "tests/cluster/install.sh --version $OLDEST failed (see above)"
[ -x "$IRSA_BIN_DIR_OLDEST/kube-apiserver" ] || die "no binaries in $IRSA_BIN_DIR_OLDEST"

# run NAME [ARGS...]: the tests of NAME, a module of tests/it or another test target (the
# library's unit tests, the benches' smoke passes), as cargo test runs them (from the package
# root).
run() {
    local name=$1 exe
    shift
    printf '\n== %s\n' "$name"
    if grep -qx "$name" "$modules"; then
        "$it" "$name::" "$@"
        return
    fi
    exe=$(awk -F '\t' -v n="$name" '$1 == n { print $2; exit }' "$targets")
    [ -n "$exe" ] || { echo "no test executable for $name" >&2; return 1; }
    "$exe" "$@"
}

# Two lanes at once, their lines prefixed with the lane's name. The node lane: the real
# node (one per machine) on Kubernetes $NEWEST, then on $OLDEST. The other lane: everything
# else on $NEWEST, then the end-to-end suites on $OLDEST. The tests mostly wait on processes
# they started, so two lanes fit 2 cores, and the machine is as busy as CI machines are.
# On the oldest supported minor runs what depends on the Kubernetes version (admission, the
# watch, the issuer and tokens, the kubelet and containerd, the chart on a real node); the chaos
# run is shortened there (IRSA_NODE_CHAOS=short: two rolling restarts, a pod deleted, a
# certificate rotation) and the README quickstart, which builds its own playground of the
# newest, is left out.
node_lane() {
    run real_node &&
        IRSA_BIN_DIR=$IRSA_BIN_DIR_OLDEST IRSA_NODE_CHAOS=short run real_node \
            --skip the_readme_real_node_quickstart_works_as_written
}
other_lane() {
    local name failed=0
    for name in $(cut -f 1 "$targets" | grep -vx it) $(grep -vx real_node "$modules"); do
        run "$name" || failed=1
    done
    for name in e2e e2e_faults trust_chain; do
        IRSA_BIN_DIR=$IRSA_BIN_DIR_OLDEST run "$name" || failed=1
    done
    return $failed
}
say "tests on Kubernetes $NEWEST ($IRSA_BIN_DIR), then the version-dependent ones on $OLDEST ($IRSA_BIN_DIR_OLDEST), in two lanes"
(node_lane 2>&1 | sed -u 's/^/node  | /'; echo "${PIPESTATUS[0]}" >"$lanes/node.rc") &
(other_lane 2>&1 | sed -u 's/^/other | /'; echo "${PIPESTATUS[0]}" >"$lanes/other.rc") &
wait
for lane in other node; do
    [ "$(cat "$lanes/$lane.rc" 2>/dev/null)" = 0 ] || die "the $lane lane failed (its lines above start with '$lane')"
done
say "all tests passed"
