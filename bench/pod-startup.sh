#!/usr/bin/env bash
# Pod create -> Running on a real node, with and without the webhook: p50/p99 over N pods each,
# and a third arm that writes the webhook's volume and variables by hand (no webhook call), which
# tells the admission's share from the kubelet's work for the projected token.
#
#   sudo scripts/dev-cluster.sh up && sudo bench/pod-startup.sh [N]      (N defaults to 50)
#
# Uses the cluster of scripts/dev-cluster.sh ($KUBECONFIG, else its default state directory).
# Each pod runs localhost/aws-cli:dev (`sleep infinity`) under a ServiceAccount annotated with a
# role; the "without" pods carry <prefix>/skip-pod-identity-webhook=true, so the API server does
# not call the webhook for them (the chart's objectSelector); the "by hand" pods skip it too but
# carry the same volume, mount and variables as a mutated pod. The arms alternate pod by pod, so
# drift on the machine affects both alike. A sample is the wall time from just before
# `kubectl create` to `kubectl wait` seeing phase Running; both kubectl starts are in it (the
# same in both arms), and pods are deleted as the run goes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-50}
NS=bench-pod-startup
STATE=${IRSA_DEV_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/irsa-webhook/dev-cluster}
export KUBECONFIG=${KUBECONFIG:-$STATE/kubeconfig}
[ -f "$KUBECONFIG" ] || { echo "pod-startup.sh: no cluster ($KUBECONFIG): run scripts/dev-cluster.sh up" >&2; exit 1; }
KUBECTL=${KUBECTL:-$(command -v kubectl || echo "$(bash "$REPO/tests/cluster/install.sh" 2>/dev/null | tail -n 1)/kubectl")}
k() { "$KUBECTL" "$@"; }

k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NS" create serviceaccount app --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NS" annotate serviceaccount app --overwrite eks.amazonaws.com/role-arn=arn:aws:iam::111122223333:role/bench >/dev/null
trap 'k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

pod() { # pod NAME SKIP [by-hand]
    cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {eks.amazonaws.com/skip-pod-identity-webhook: "$2"}
spec:
  serviceAccountName: app
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/aws-cli:dev
    imagePullPolicy: Never
    command: [sleep, infinity]
YAML
    [ "${3:-}" = by-hand ] || return 0
    cat <<YAML
    env:
    - {name: AWS_ROLE_ARN, value: "arn:aws:iam::111122223333:role/bench"}
    - {name: AWS_WEB_IDENTITY_TOKEN_FILE, value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token}
    volumeMounts:
    - {name: aws-iam-token, mountPath: /var/run/secrets/eks.amazonaws.com/serviceaccount, readOnly: true}
  volumes:
  - name: aws-iam-token
    projected:
      sources:
      - serviceAccountToken: {audience: sts.amazonaws.com, expirationSeconds: 86400, path: token}
YAML
}

with=()
without=()
byhand=()
for ((i = 1; i <= N; i++)); do
    for arm in with without byhand; do
        skip=true
        [ "$arm" = with ] && skip=false
        start=$(date +%s%N)
        pod "$arm-$i" "$skip" "$([ "$arm" = byhand ] && echo by-hand)" | k -n "$NS" create -f - >/dev/null
        k -n "$NS" wait --for=jsonpath='{.status.phase}'=Running "pod/$arm-$i" --timeout=120s >/dev/null
        ms=$((($(date +%s%N) - start) / 1000000))
        if [ "$arm" = with ]; then
            mutated=$(k -n "$NS" get pod "$arm-$i" -o jsonpath='{.spec.volumes[?(@.name=="aws-iam-token")].name}')
            [ -n "$mutated" ] || { echo "pod $arm-$i was not mutated: is the webhook installed?" >&2; exit 1; }
            with+=("$ms")
        elif [ "$arm" = without ]; then
            without+=("$ms")
        else
            byhand+=("$ms")
        fi
        k -n "$NS" delete pod "$arm-$i" --wait=false >/dev/null
    done
done

report() { # report NAME SAMPLES...
    local name=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v name="$name" '
        { v[NR] = $1; sum += $1 }
        END {
            p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
            printf "%-16s n=%d  p50 %5d ms  p99 %5d ms  mean %6.0f ms  min %5d ms  max %5d ms\n", name, NR, p50, p99, sum / NR, v[1], v[NR]
        }'
}
echo "pod create -> Running on $(k get nodes -o jsonpath='{.items[0].status.nodeInfo.kubeletVersion} {.items[0].status.nodeInfo.containerRuntimeVersion}'), $(nproc) cores"
report "with webhook" "${with[@]}"
report "without webhook" "${without[@]}"
report "volume by hand" "${byhand[@]}"
