#!/usr/bin/env bash
# Hand-run smoke check of the local control plane used by the e2e tests.
#
# Usage:  tests/cluster/smoke.sh            # builds/looks up binaries via install.sh
#         IRSA_BIN_DIR=/path/to/bin tests/cluster/smoke.sh
#         SMOKE_KEEP=1 tests/cluster/smoke.sh   # keep the temp dir (certs, logs)
#
# Starts etcd and kube-apiserver on free loopback ports with a temp data dir,
# waits for /readyz, creates a Namespace + ServiceAccount + Pod through the REST
# API, requests a projected-style ServiceAccount token for sts.amazonaws.com
# bound to the pod, checks it against the OIDC discovery documents and tears
# everything down. It doubles as the reference for the flags that work; see
# README.md. Needs: curl, openssl, jq.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'smoke: %s\n' "$*" >&2; }
ok() { printf 'smoke: OK   %s\n' "$*" >&2; }
die() {
    printf 'smoke: FAIL %s\n' "$*" >&2
    exit 1
}

for tool in curl openssl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (apt-get install $tool)"
done

BIN=${IRSA_BIN_DIR:-}
if [ -z "$BIN" ]; then
    BIN=$("$HERE/install.sh" | tail -n1) || die "install.sh failed"
fi
{ [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ]; } || die "no etcd/kube-apiserver in '$BIN'"
log "binaries: $BIN"
log "$("$BIN/kube-apiserver" --version 2>&1 | head -n1); etcd $("$BIN/etcd" --version 2>&1 | awk '/etcd Version/ {print $3}')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/irsa-smoke.XXXXXX")
ETCD_PID=""
APISERVER_PID=""

stop() { # stop PID: SIGTERM, then SIGKILL after 10s
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        for f in etcd.log kube-apiserver.log; do
            [ -s "$WORK/$f" ] || continue
            printf '\n----- last lines of %s -----\n' "$f" >&2
            tail -n 30 "$WORK/$f" >&2
        done
    fi
    stop "$APISERVER_PID"
    stop "$ETCD_PID"
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: pick random ones until nothing answers on it.
USED_PORTS=" "
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}
ETCD_CLIENT_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)

# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
ETCD_ARGS=(
    --name=smoke
    --data-dir="$WORK/etcd-data"
    --listen-client-urls="$ETCD_URL"
    --advertise-client-urls="$ETCD_URL"
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster="smoke=http://127.0.0.1:$ETCD_PEER_PORT"
    --unsafe-no-fsync # throwaway test data: skip fsync
    --log-level=warn
)
T0=$SECONDS
"$BIN/etcd" "${ETCD_ARGS[@]}" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for i in $(seq 1 100); do
    kill -0 "$ETCD_PID" 2>/dev/null || die "etcd exited early"
    if curl -fsS "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
    [ "$i" -lt 100 ] || die "etcd not healthy after 20s"
    sleep 0.2
done
ok "etcd healthy on $ETCD_URL after $((SECONDS - T0))s"

# ---------------------------------------------------------------------------
# Certificates, keys and the admin token (for this smoke only)
# ---------------------------------------------------------------------------
(
    cd "$WORK"
    # A CA and a serving cert signed by it (a self-signed leaf would also do for
    # curl, but rustls rejects a CA certificate used as an end-entity cert).
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=irsa-smoke-ca" \
        -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
        -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # ServiceAccount token signing key: the same RSA key is given to
    # --service-account-signing-key-file and --service-account-key-file.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
ADMIN_TOKEN=$(openssl rand -hex 16)
# token,user,uid,"group1,group2"
printf '%s,admin,admin-uid,"system:masters"\n' "$ADMIN_TOKEN" >"$WORK/tokens.csv"
ok "generated CA, serving cert, SA key and admin token"

# ---------------------------------------------------------------------------
# kube-apiserver
# ---------------------------------------------------------------------------
API="https://127.0.0.1:$API_PORT"
ISSUER="$API" # must be https:// or the OIDC discovery endpoints are disabled
APISERVER_ARGS=(
    --etcd-servers="$ETCD_URL"
    --bind-address=127.0.0.1
    --secure-port="$API_PORT"
    --advertise-address=127.0.0.1
    --endpoint-reconciler-type=none
    --service-cluster-ip-range=10.0.0.0/24
    --tls-cert-file="$WORK/apiserver.crt"
    --tls-private-key-file="$WORK/apiserver.key"
    --authorization-mode=RBAC
    --token-auth-file="$WORK/tokens.csv"
    --service-account-issuer="$ISSUER"
    --service-account-key-file="$WORK/sa.key"
    --service-account-signing-key-file="$WORK/sa.key"
    --api-audiences="$ISSUER,sts.amazonaws.com"
)
T0=$SECONDS
"$BIN/kube-apiserver" "${APISERVER_ARGS[@]}" >"$WORK/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

CURL=(curl -sS --cacert "$WORK/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN")
# kube METHOD PATH [JSON]: call the REST API, print the body, fail on HTTP >= 400.
kube() {
    local method=$1 path=$2 body=${3:-} out code
    out=$(mktemp "$WORK/resp.XXXXXX")
    if [ -n "$body" ]; then
        code=$("${CURL[@]}" -o "$out" -w '%{http_code}' -X "$method" \
            -H 'Content-Type: application/json' --data-binary "$body" "$API$path")
    else
        code=$("${CURL[@]}" -o "$out" -w '%{http_code}' -X "$method" "$API$path")
    fi
    if [ "$code" -ge 400 ]; then
        cat "$out" >&2
        die "$method $path -> HTTP $code"
    fi
    cat "$out"
}

for i in $(seq 1 300); do
    kill -0 "$APISERVER_PID" 2>/dev/null || die "kube-apiserver exited early"
    if [ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$API/readyz" 2>/dev/null)" = 200 ]; then break; fi
    [ "$i" -lt 300 ] || {
        "${CURL[@]}" "$API/readyz?verbose" >&2 || true
        die "kube-apiserver not ready after 60s"
    }
    sleep 0.2
done
ok "kube-apiserver /readyz on $API after $((SECONDS - T0))s"
ok "GET /version: $(kube GET /version | jq -c '{gitVersion, goVersion}')"

# ---------------------------------------------------------------------------
# Namespace, ServiceAccount, Pod
# ---------------------------------------------------------------------------
NS=irsa-smoke
SA=app
kube POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
ok "created namespace $NS"
kube POST "/api/v1/namespaces/$NS/serviceaccounts" "$(jq -nc --arg sa "$SA" '{
    apiVersion: "v1", kind: "ServiceAccount",
    metadata: {name: $sa, annotations: {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/smoke"}}
}')" >/dev/null
ok "created serviceaccount $NS/$SA"
POD_JSON=$(kube POST "/api/v1/namespaces/$NS/pods" "$(jq -nc --arg sa "$SA" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: "smoke"},
    spec: {serviceAccountName: $sa, containers: [{name: "app", image: "registry.invalid/app:1"}]}
}')")
POD_UID=$(jq -r .metadata.uid <<<"$POD_JSON")
{ [ -n "$POD_UID" ] && [ "$POD_UID" != null ]; } || die "pod has no uid"
ok "created pod $NS/smoke uid=$POD_UID phase=$(jq -r .status.phase <<<"$POD_JSON") volumes=$(jq -c '[.spec.volumes[]?.name]' <<<"$POD_JSON")"

# ---------------------------------------------------------------------------
# TokenRequest bound to the pod
# ---------------------------------------------------------------------------
TR_JSON=$(kube POST "/api/v1/namespaces/$NS/serviceaccounts/$SA/token" "$(jq -nc --arg uid "$POD_UID" '{
    apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest",
    spec: {
        audiences: ["sts.amazonaws.com"], expirationSeconds: 3600,
        boundObjectRef: {apiVersion: "v1", kind: "Pod", name: "smoke", uid: $uid}
    }
}')")
TOKEN=$(jq -r .status.token <<<"$TR_JSON")
{ [ -n "$TOKEN" ] && [ "$TOKEN" != null ]; } || die "TokenRequest returned no token"
b64url_decode() {
    local s
    s=$(tr '_-' '/+' <<<"$1")
    case $((${#s} % 4)) in 2) s+="==" ;; 3) s+="=" ;; esac
    openssl base64 -d -A <<<"$s"
}
IFS=. read -r JWT_H JWT_P JWT_S <<<"$TOKEN"
HEADER=$(b64url_decode "$JWT_H")
CLAIMS=$(b64url_decode "$JWT_P")
ok "TokenRequest: expires $(jq -r .status.expirationTimestamp <<<"$TR_JSON"), header $(jq -c . <<<"$HEADER")"
ok "token claims: $(jq -c '{iss, aud, sub, exp_minus_iat: (.exp - .iat), pod: ."kubernetes.io".pod}' <<<"$CLAIMS")"
[ "$(jq -r '.aud | if type == "array" then .[0] else . end' <<<"$CLAIMS")" = sts.amazonaws.com ] || die "unexpected aud"
[ "$(jq -r .iss <<<"$CLAIMS")" = "$ISSUER" ] || die "unexpected iss"
[ "$(jq -r .sub <<<"$CLAIMS")" = "system:serviceaccount:$NS:$SA" ] || die "unexpected sub"
[ "$(jq -r '."kubernetes.io".pod.uid' <<<"$CLAIMS")" = "$POD_UID" ] || die "token not bound to the pod"
[ "$(jq -r '.exp - .iat' <<<"$CLAIMS")" = 3600 ] || die "unexpected lifetime"

# RS256 signature check with the SA public key.
printf '%s' "$JWT_H.$JWT_P" >"$WORK/jwt.signed"
b64url_decode "$JWT_S" >"$WORK/jwt.sig"
openssl dgst -sha256 -verify "$WORK/sa.pub" -signature "$WORK/jwt.sig" "$WORK/jwt.signed" >/dev/null ||
    die "token signature does not verify with the SA public key"
ok "token signature verifies (RS256) with the SA public key"

# ---------------------------------------------------------------------------
# OIDC discovery
# ---------------------------------------------------------------------------
OIDC=$(kube GET /.well-known/openid-configuration)
ok "openid-configuration: $(jq -c . <<<"$OIDC")"
[ "$(jq -r .issuer <<<"$OIDC")" = "$ISSUER" ] || die "discovery issuer mismatch"
JWKS=$(kube GET /openid/v1/jwks)
ok "jwks: $(jq -c '[.keys[] | {kty, alg, use, kid}]' <<<"$JWKS")"
KID=$(jq -r .kid <<<"$HEADER")
jq -e --arg kid "$KID" 'any(.keys[]; .kid == $kid)' <<<"$JWKS" >/dev/null || die "token kid $KID not in JWKS"
ok "token kid is published in the JWKS"

log "all checks passed"
