#!/usr/bin/env bash
# Hostile-client benchmark of `irsa-webhook serve` (and of `discovery`'s public port) on loopback:
# one server process takes the attacks a-h in a row while a legitimate client keeps one TLS
# HTTP/1.1 connection and POSTs the fixture review every 20 ms; per attack: peak RSS of the
# server, the legitimate client's p50/p99/failures, and how long the server takes to close the
# attacking connections. See bench/README.md ("Hostile clients") and bench/hostile.py.
#
#   bench/hostile.sh                 all attacks, about 5-6 minutes with the defaults
#   ONLY=b,d bench/hostile.sh        only some attacks
#
# Environment: ATTACK_SECONDS (default 35: how long each connection attack is watched after its
# last byte; more than the 30 s close target), ONLY (comma list of attack letters a-h),
# PORT / METRICS_PORT (default 18443 / 19999), DISCOVERY_PORT / DISCOVERY_METRICS_PORT /
# API_PORT (default 18080 / 18081 / 16443, attack h), PAUSE (seconds between attacks, 3),
# SKIP_BUILD=1, KEEP=1 (keep the temp dir with certificates, logs and kubeconfig).
# Exit status 0 whatever the figures (a bench, not a test); non-zero when the script fails or the
# server died.
set -euo pipefail

PORT=${PORT:-18443}
METRICS_PORT=${METRICS_PORT:-19999}
DISCOVERY_PORT=${DISCOVERY_PORT:-18080}
DISCOVERY_METRICS_PORT=${DISCOVERY_METRICS_PORT:-18081}
API_PORT=${API_PORT:-16443}
ATTACK_SECONDS=${ATTACK_SECONDS:-35}
PAUSE=${PAUSE:-3}
ONLY=${ONLY:-a,b,c,d,e,f,g,h}
ISSUER=https://oidc.example.test
export READY_TIMEOUT=${READY_TIMEOUT:-60}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/irsa-webhook
HOSTILE=(python3 "$ROOT/bench/hostile.py")
LOADTOOL=(python3 "$ROOT/bench/loadtool.py")
REVIEW=$ROOT/bench/fixtures/admission-review.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/irsa-hostile.XXXXXX")
SERVER_PID= DISCOVERY_PID= API_PID=

stop() { # stop PID: SIGTERM, up to 5 s, then SIGKILL
    [[ -n $1 ]] && kill -0 "$1" 2>/dev/null || return 0
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    stop "$SERVER_PID"
    stop "$DISCOVERY_PID"
    stop "$API_PID"
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
die() { echo "hostile.sh: $*" >&2; exit 1; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

for tool in python3 flock; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
# Up to 2000 attacking connections at once, plus the server's own: both inherit this limit.
ulimit -n "$(ulimit -Hn)"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --release (waits for /tmp/irsa-heavy-build.lock)"
    (cd "$ROOT" && flock /tmp/irsa-heavy-build.lock cargo build --release --quiet)
fi
[[ -x $BIN ]] || die "$BIN not built"

ports=("$PORT" "$METRICS_PORT")
wants h && ports+=("$DISCOVERY_PORT" "$DISCOVERY_METRICS_PORT" "$API_PORT")
for port in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use; set PORT / METRICS_PORT / DISCOVERY_PORT / ..."
    fi
done

say "certificates and ServiceAccounts in $WORK"
"$BIN" certs --out "$WORK/certs" --dns localhost --ip 127.0.0.1 >/dev/null
# The fixture's own ServiceAccount (for the legitimate client: its answer must carry a patch)
# and default/app (the attacks' pods), both with a role.
read -r FIXTURE_NS FIXTURE_SA < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["request"]
o = r["object"]
print(o["metadata"].get("namespace") or r["namespace"], o["spec"].get("serviceAccountName") or o["spec"].get("serviceAccount") or "default")
' "$REVIEW")
cat >"$WORK/service-accounts.yaml" <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: default
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/app
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $FIXTURE_SA
  namespace: $FIXTURE_NS
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/$FIXTURE_SA
EOF
echo "   ServiceAccounts default/app and $FIXTURE_NS/$FIXTURE_SA; open-files limit $(ulimit -n)"

say "irsa-webhook serve on 127.0.0.1:$PORT"
out=$(METRICS_PORT=$METRICS_PORT "${LOADTOOL[@]}" start "$WORK/server.log" -- "$BIN" serve \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
    --service-accounts-file "$WORK/service-accounts.yaml" \
    --bind-address 127.0.0.1 --port "$PORT" --metrics-port "$METRICS_PORT" \
    --log-level warn) || { tail -20 "$WORK/server.log" >&2; die "the server did not start"; }
read -r SERVER_PID READY_MS <<<"$out"
echo "   pid $SERVER_PID, ready after $READY_MS ms"

DISCOVERY_ARGS=()
if wants h; then
    say "irsa-webhook discovery on 127.0.0.1:$DISCOVERY_PORT (stand-in API server on :$API_PORT)"
    "${HOSTILE[@]}" apiserver --port "$API_PORT" --cert "$WORK/certs/tls.crt" \
        --key "$WORK/certs/tls.key" --issuer "$ISSUER" >"$WORK/apiserver.log" 2>&1 &
    API_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null && break
        kill -0 "$API_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stand-in
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$WORK/certs/ca.crt")
users:
- name: bench
  user:
    token: hostile-bench
contexts:
- name: stand-in
  context: {cluster: stand-in, user: bench}
current-context: stand-in
EOF
    if out=$(METRICS_PORT=$DISCOVERY_METRICS_PORT READY_TIMEOUT=30 "${LOADTOOL[@]}" start \
        "$WORK/discovery.log" -- "$BIN" discovery --issuer-url "$ISSUER" \
        --kubeconfig "$WORK/kubeconfig" --refresh-interval 10m --max-stale 1h \
        --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
        --bind-address 127.0.0.1 --port "$DISCOVERY_PORT" --metrics-port "$DISCOVERY_METRICS_PORT" \
        --log-level warn); then
        read -r DISCOVERY_PID _ <<<"$out"
        echo "   pid $DISCOVERY_PID, serving $ISSUER"
        DISCOVERY_ARGS=(--discovery-port "$DISCOVERY_PORT" --discovery-pid "$DISCOVERY_PID")
    else
        echo "   the discovery server did not become ready; attack h is skipped:"
        tail -5 "$WORK/discovery.log" | sed 's/^/   | /'
    fi
fi

say "attacks $ONLY, ATTACK_SECONDS=$ATTACK_SECONDS"
status=0
"${HOSTILE[@]}" run --port "$PORT" --pid "$SERVER_PID" --ca "$WORK/certs/ca.crt" \
    --review "$REVIEW" --attack-seconds "$ATTACK_SECONDS" --pause "$PAUSE" --only "$ONLY" \
    "${DISCOVERY_ARGS[@]}" || status=$?
if [[ $status != 0 ]]; then
    echo "   server log (last lines):"
    tail -20 "$WORK/server.log" | sed 's/^/   | /'
    [[ $status == 3 ]] && die "the server died"
    die "hostile.py failed (status $status)"
fi
