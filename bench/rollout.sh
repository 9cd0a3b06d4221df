#!/usr/bin/env bash
# Rollouts under load: N rolling restarts of the webhook (and a pod deleted) while pods are
# created without pause at R creates a second, half through a webhook entry with the chart's
# failurePolicy Ignore and half through one with Fail; then, unless FAULTS=0, the ungraceful
# faults: the API server restarted, a webhook container SIGKILLed, one replica cut off by an
# iptables rule for 20 s. Prints, per phase and policy: creates, injected, admitted without the
# injection (a lost call under Ignore), refused (a lost call under Fail), not taken by the API
# server itself, and the create latency p50/p99 (a server-side dry run: admission and storage
# validation, no pod is run).
#
#   sudo scripts/dev-cluster.sh up && sudo bench/rollout.sh [N] [R]     (N 5, R 20 by default)
#
# Uses the cluster of scripts/dev-cluster.sh (IRSA_DEV_STATE, as there). The creates use a
# namespace `irsa-chaos` and add a second entry to the webhook configuration; run
# `scripts/dev-cluster.sh up` again to get the chart's own configuration back.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-5}
R=${2:-20}
STATE=${IRSA_DEV_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/irsa-webhook/dev-cluster}
die() {
    printf 'rollout.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || die "the faults use the node's containerd and iptables: run as root (sudo)"
[ -f "$STATE/node.env" ] || die "no cluster in $STATE: run scripts/dev-cluster.sh up"
cd "$REPO"
IRSA_ROLLOUT_STATE=$STATE IRSA_ROLLOUTS=$N IRSA_ROLLOUT_RATE=$R IRSA_ROLLOUT_FAULTS=${FAULTS:-1} \
    cargo test --locked --test it real_node::rollout_benchmark -- --ignored --nocapture --test-threads=1
