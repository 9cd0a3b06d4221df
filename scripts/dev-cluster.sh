#!/usr/bin/env bash
# A local playground: a real single-node Kubernetes cluster on this machine, without Docker or
# a registry, running the chart from this working tree.
#
#   sudo scripts/dev-cluster.sh up      # then: eval "$(sudo scripts/dev-cluster.sh up | tail -n 1)"
#   sudo scripts/dev-cluster.sh down
#
# `up` builds what is missing (cached in ~/.cache/irsa-webhook: Kubernetes and containerd from
# the Go module proxy, runc/CNI from Debian, the images), builds irsa-webhook (a debug build,
# minutes, not the release build's ten), starts the node
# (tests/cluster/node/node.sh), loads localhost/irsa-webhook:dev (scripts/build-image.sh) and
# localhost/aws-cli:dev, installs the chart into irsa-system (Pod Security `restricted`; image
# pullPolicy Never; self-managed certificates; the chart's failurePolicy), waits until the webhook
# is Ready and prints, as its last line, `export KUBECONFIG=<path>`. kubectl, helm and
# irsa-webhook are linked into <state>/bin. Running it again rebuilds and updates the release.
# `down` stops everything and removes its state.
#
# Environment: IRSA_DEV_STATE (default ${XDG_STATE_HOME:-~/.local/state}/irsa-webhook/dev-cluster),
# IRSA_DEV_RELEASE=1 (run the optimised release build instead of the debug one),
# IRSA_DEV_BINARY (an irsa-webhook binary to use as it is, no build),
# IRSA_DEV_VALUES (a values file passed to helm after the playground's own settings).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${IRSA_DEV_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/irsa-webhook/dev-cluster}
NAMESPACE=irsa-system
RELEASE=irsa-webhook

say() { printf 'dev-cluster.sh: %s\n' "$*" >&2; }
die() {
    printf 'dev-cluster.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
last_line() { tail -n 1; }

up() {
    [ "$(id -u)" -eq 0 ] || die "the node runs containers and changes the network: run as root (sudo)"
    say "Kubernetes binaries (tests/cluster/install.sh; the first build takes several minutes)"
    IRSA_BIN_DIR=$(bash "$REPO/tests/cluster/install.sh" | last_line)
    export IRSA_BIN_DIR
    say "node packages and images (tests/cluster/node/install.sh)"
    IRSA_NODE_IMAGES=$(bash "$REPO/tests/cluster/node/install.sh" | last_line)
    export IRSA_NODE_IMAGES
    say "helm (scripts/install-tools.sh)"
    local tools
    tools=$(bash "$REPO/scripts/install-tools.sh" | last_line)
    local binary=${IRSA_DEV_BINARY:-} target=${CARGO_TARGET_DIR:-$REPO/target}
    if [ -z "$binary" ] && [ -n "${IRSA_DEV_RELEASE:-}" ]; then
        say "irsa-webhook: cargo build --release --locked (IRSA_DEV_RELEASE: optimised; about ten minutes from scratch on 2 cores)"
        (cd "$REPO" && cargo build --release --locked) || die "cargo build --release failed"
        binary=$target/release/irsa-webhook
    elif [ -z "$binary" ]; then
        say "irsa-webhook: cargo build --locked (a debug build: the same code as the release, built in minutes; IRSA_DEV_RELEASE=1 for the optimised one)"
        (cd "$REPO" && cargo build --locked) || die "cargo build failed"
        binary=$target/debug/irsa-webhook
    fi
    binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
    say "the webhook image (scripts/build-image.sh --binary $binary)"
    mkdir -p "$(dirname "$STATE")"
    bash "$REPO/scripts/build-image.sh" --binary "$binary" --output "$STATE.image.tar" >/dev/null
    say "the node (tests/cluster/node/node.sh up $STATE)"
    bash "$REPO/tests/cluster/node/node.sh" up "$STATE" "$IRSA_NODE_IMAGES/aws-cli.tar" "$STATE.image.tar" >/dev/null
    rm -f "$STATE.image.tar"
    export KUBECONFIG=$STATE/kubeconfig
    # The tools the playground was made with, for users without them: $STATE/bin on PATH.
    mkdir -p "$STATE/bin"
    ln -sfn "$IRSA_BIN_DIR/kubectl" "$STATE/bin/kubectl"
    ln -sfn "$tools/helm" "$STATE/bin/helm"
    ln -sfn "$binary" "$STATE/bin/irsa-webhook"
    local kubectl=$IRSA_BIN_DIR/kubectl
    "$kubectl" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
    "$kubectl" label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
    local helm_args=(upgrade --install "$RELEASE" "$REPO/chart" --namespace "$NAMESPACE"
        --set image.repository=localhost/irsa-webhook --set image.tag=dev --set image.pullPolicy=Never
        --set certificates.mode=self --wait --timeout 5m)
    [ -n "${IRSA_DEV_VALUES:-}" ] && helm_args+=(--values "$IRSA_DEV_VALUES")
    local upgrade=false
    "$kubectl" -n "$NAMESPACE" get deployment "$RELEASE" >/dev/null 2>&1 && upgrade=true
    say "the chart (helm ${helm_args[*]})"
    HELM_CONFIG_HOME=$STATE/helm/config HELM_CACHE_HOME=$STATE/helm/cache HELM_DATA_HOME=$STATE/helm/data \
        "$tools/helm" "${helm_args[@]}" >/dev/null || die "helm install failed (node logs: $STATE/logs)"
    # A rebuilt image keeps its tag: restart so that the pods run the new one.
    $upgrade && "$kubectl" -n "$NAMESPACE" rollout restart deployment "$RELEASE" >/dev/null
    "$kubectl" -n "$NAMESPACE" rollout status deployment "$RELEASE" --timeout=5m >&2 ||
        die "the webhook did not become Ready (kubectl -n $NAMESPACE describe pods; node logs: $STATE/logs)"
    say "ready. Try:"
    cat >&2 <<EOF
  kubectl create serviceaccount app
  kubectl annotate serviceaccount app eks.amazonaws.com/role-arn=arn:aws:iam::111122223333:role/app
  kubectl run app --image=localhost/aws-cli:dev --image-pull-policy=Never \\
      --overrides='{"spec":{"serviceAccountName":"app"}}'
  kubectl exec app -- sh -c 'env | grep ^AWS_; cat "\$AWS_WEB_IDENTITY_TOKEN_FILE"'
  irsa-webhook doctor --pod app
  (kubectl, helm and irsa-webhook: export PATH=$STATE/bin:\$PATH)
EOF
    printf 'export KUBECONFIG=%s\n' "$KUBECONFIG"
}

down() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo), as for up"
    if [ ! -d "$STATE" ]; then
        say "nothing to do: no cluster in $STATE"
        return 0
    fi
    bash "$REPO/tests/cluster/node/node.sh" down "$STATE"
    rm -f "$STATE.image.tar"
}

case ${1:-} in
up) up ;;
down) down ;;
*) die "usage: scripts/dev-cluster.sh up|down" ;;
esac
