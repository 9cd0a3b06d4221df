#!/usr/bin/env bash
# Build a real Kubernetes node and control plane (kube-apiserver, etcd, kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy, kubectl) from the Go module
# proxy and cache them.
#
# Usage:   BIN=$(tests/cluster/install.sh)
#          "$BIN/kube-apiserver" --version; "$BIN/etcd" --version
#
# Only the bin directory is printed on stdout (as the last and only line); all
# logs go to stderr. The binaries are built from the wrapper modules in
# tests/cluster/kube-apiserver and tests/cluster/etcd (see README.md there) into
#   ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/bin/<key>/
# where <key> is a hash of the wrapper go.mod/go.sum files, the build flags and
# `go version`, so a pin change rebuilds and a rerun is instant. A cold build
# takes a long time (kube-apiserver is huge); warm reruns return immediately.
#
# Never skips silently: if Go is missing or too old, or modules cannot be
# downloaded from the proxy, it exits non-zero with an explanation.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    printf 'install.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------
command -v go >/dev/null 2>&1 ||
    die "'go' not found on PATH. Install Go >= 1.26 - the e2e tests need it to build kube-apiserver and etcd."
command -v flock >/dev/null 2>&1 ||
    die "'flock' not found on PATH (package util-linux); it is needed to make concurrent runs safe."
command -v sha256sum >/dev/null 2>&1 || die "'sha256sum' not found on PATH (package coreutils)."

export CGO_ENABLED=0
# Never let the go command download a different toolchain: only the Go module
# proxy is reachable, and the key below assumes the local toolchain is used.
export GOTOOLCHAIN=local

GO_VERSION_LINE=$(go version) || die "'go version' failed"
GOVERSION=$(go env GOVERSION) # e.g. go1.26.8

# The wrapper go.mod files state the minimum Go they need; with
# GOTOOLCHAIN=local an older Go would fail late with a cryptic error.
version_ge() { # version_ge A B: is A >= B (dotted numeric)
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}
for mod in kube-apiserver etcd; do
    need=$(awk '$1 == "go" { print $2; exit }' "$HERE/$mod/go.mod")
    have=${GOVERSION#go}
    have=${have%%[!0-9.]*} # strip suffixes like "rc1" or " X:..."
    version_ge "$have" "$need" ||
        die "tests/cluster/$mod/go.mod needs Go >= $need but 'go' is $GOVERSION. Install a newer Go (GOTOOLCHAIN=local is forced: toolchains are not downloaded)."
done

# ---------------------------------------------------------------------------
# Cache key
# ---------------------------------------------------------------------------
# required_version GOMOD MODULE: the version MODULE is required at in GOMOD
# (handles both `require m v` and require blocks; ignores comments/replaces).
required_version() {
    awk -v m="$2" '
        $1 ~ /^\/\// { next }
        $1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }
        $1 == m && $2 ~ /^v/ { print $2; exit }
    ' "$1"
}
KUBE_VERSION=$(required_version "$HERE/kube-apiserver/go.mod" k8s.io/kubernetes)
[ -n "$KUBE_VERSION" ] || die "could not find 'require k8s.io/kubernetes vX.Y.Z' in tests/cluster/kube-apiserver/go.mod"
ETCD_VERSION=$(required_version "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$ETCD_VERSION" ] || die "could not find go.etcd.io/etcd/server/v3 in tests/cluster/etcd/go.mod"

KUBE_MAJOR=${KUBE_VERSION#v}
KUBE_MAJOR=${KUBE_MAJOR%%.*}
KUBE_MINOR=${KUBE_VERSION#v*.}
KUBE_MINOR=${KUBE_MINOR%%.*}

# Same -X variables that kubernetes' hack/lib/version.sh sets, so that
# `kube-apiserver --version` and GET /version report the real version instead
# of v0.0.0-master. buildDate is fixed to keep the build reproducible.
kube_version_ldflags() {
    local pkg out=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        out+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
        out+=" -X ${pkg}.gitMajor=${KUBE_MAJOR}"
        out+=" -X ${pkg}.gitMinor=${KUBE_MINOR}"
        out+=" -X ${pkg}.gitTreeState=clean"
        out+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
    done
    printf '%s' "$out"
}
KUBE_LDFLAGS="-s -w$(kube_version_ldflags)"
ETCD_LDFLAGS="-s -w"
BUILD_FLAGS=(-mod=readonly -trimpath)

KEY=$(
    {
        printf 'go: %s\n' "$GO_VERSION_LINE"
        printf 'env: CGO_ENABLED=%s GOOS=%s GOARCH=%s\n' "$CGO_ENABLED" "$(go env GOOS)" "$(go env GOARCH)"
        printf 'flags: %s\nkube-ldflags: %s\netcd-ldflags: %s\n' "${BUILD_FLAGS[*]}" "$KUBE_LDFLAGS" "$ETCD_LDFLAGS"
        for f in kube-apiserver/go.mod kube-apiserver/go.sum etcd/go.mod etcd/go.sum; do
            printf '== %s\n' "$f"
            cat "$HERE/$f"
        done
    } | sha256sum | cut -c1-16
)
BIN_DIR="$CACHE_DIR/bin/${KUBE_VERSION}-etcd${ETCD_VERSION}-${KEY}"

KUBE_COMMANDS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)
have_binaries() {
    local name
    for name in "${KUBE_COMMANDS[@]}" etcd; do
        [ -x "$BIN_DIR/$name" ] || return 1
    done
}

# Fast path: nothing to do (no lock needed: binaries only ever appear by an
# atomic rename of a complete file).
if have_binaries; then
    log "up to date: $BIN_DIR"
    printf '%s\n' "$BIN_DIR"
    exit 0
fi

# ---------------------------------------------------------------------------
# Build (serialised across concurrent runs with flock)
# ---------------------------------------------------------------------------
mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR"
LOCK="$CACHE_DIR/install.lock"
exec 9>"$LOCK" || die "cannot open lock file $LOCK"
if ! flock -n 9; then
    log "another install.sh is running; waiting for $LOCK ..."
    flock 9
fi
rm -f "$BIN_DIR"/.*.tmp.* # leftovers of an interrupted build

# Download (once) everything needed to build PKG, with a clear error when the
# module proxy is unreachable. Uses -mod=readonly: go.mod/go.sum are checked in.
download_deps() { # download_deps DIR PKG
    local dir=$1 pkg=$2 errf
    errf=$(mktemp)
    log "resolving modules for $pkg (GOPROXY=$(go env GOPROXY)) ..."
    if ! (cd "$dir" && go list -mod=readonly -deps "$pkg" >/dev/null 2>"$errf"); then
        cat "$errf" >&2
        rm -f "$errf"
        die "could not download the Go modules needed for $pkg. Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))? If go.mod/go.sum are out of date, run 'go mod tidy' in $dir."
    fi
    rm -f "$errf"
}

build() { # build NAME DIR PKG LDFLAGS
    local name=$1 dir=$2 pkg=$3 ldflags=$4 tmp start
    if [ -x "$BIN_DIR/$name" ]; then
        log "$name: already built"
        return 0
    fi
    download_deps "$dir" "$pkg"
    tmp="$BIN_DIR/.${name}.tmp.$$"
    log "building $name from $pkg (cold builds take many minutes) ..."
    start=$SECONDS
    if ! (cd "$dir" && go build "${BUILD_FLAGS[@]}" -ldflags="$ldflags" -o "$tmp" "$pkg" >&2); then
        rm -f "$tmp"
        die "go build of $pkg failed (see above)"
    fi
    mv -f "$tmp" "$BIN_DIR/$name"
    log "$name: built in $((SECONDS - start))s, $(du -h "$BIN_DIR/$name" | cut -f1)"
}

# Sequential on purpose: each build already uses every core.
# kube-apiserver and etcd first: every end-to-end test needs them; the node's binaries share most
# packages with kube-apiserver, so the Go build cache makes each of them cheaper.
build kube-apiserver "$HERE/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
build etcd "$HERE/etcd" go.etcd.io/etcd/server/v3 "$ETCD_LDFLAGS"
for name in "${KUBE_COMMANDS[@]:1}"; do
    build "$name" "$HERE/kube-apiserver" "k8s.io/kubernetes/cmd/$name" "$KUBE_LDFLAGS"
done

cat >"$BIN_DIR/.VERSIONS.tmp.$$" <<EOF
${KUBE_COMMANDS[*]} $KUBE_VERSION
etcd $ETCD_VERSION
$GO_VERSION_LINE
EOF
mv -f "$BIN_DIR/.VERSIONS.tmp.$$" "$BIN_DIR/VERSIONS"

have_binaries || die "binaries missing in $BIN_DIR after build"
log "ready: $BIN_DIR"
printf '%s\n' "$BIN_DIR"
