#!/usr/bin/env bash
# Build a real Kubernetes node and control plane (kube-apiserver, etcd, kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy, kubectl) and containerd 2 (containerd,
# containerd-shim-runc-v2, ctr) from the Go module proxy and cache them.
#
# Usage:   BIN=$(tests/cluster/install.sh [--version v1.X.Y])
#          "$BIN/kube-apiserver" --version; "$BIN/etcd" --version
#
# --version (or $IRSA_KUBE_VERSION) picks the Kubernetes release; the default is the newest one
# pinned in tests/cluster/kubernetes/ (v1.X.Y/go.mod and go.sum, written by wrapper.sh there).
# Any other release is wrapped on the fly by wrapper.sh into the cache. Only the bin directory
# is printed on stdout (as the last and only line); all logs go to stderr. The binaries are
# built from the wrapper modules (see README.md here) into
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

KUBE_VERSION=${IRSA_KUBE_VERSION:-}
while [ $# -gt 0 ]; do
    case $1 in
    --version) KUBE_VERSION=${2:?--version needs a Kubernetes release such as v1.37.2}; shift 2 ;;
    -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: install.sh [--version v1.X.Y])" ;;
    esac
done
# The newest pinned release, unless one was asked for.
[ -n "$KUBE_VERSION" ] || KUBE_VERSION=$(cd "$HERE/kubernetes" && ls -d v1.* | sort -V | tail -n 1)
[[ $KUBE_VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "--version $KUBE_VERSION is not a Kubernetes release (v1.MINOR.PATCH)"

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
check_go() { # check_go GOMOD: the local Go is new enough for it
    local need have
    need=$(awk '$1 == "go" { print $2; exit }' "$1")
    have=${GOVERSION#go}
    have=${have%%[!0-9.]*} # strip suffixes like "rc1" or " X:..."
    version_ge "$have" "$need" ||
        die "$1 needs Go >= $need but 'go' is $GOVERSION. Install a newer Go (GOTOOLCHAIN=local is forced: toolchains are not downloaded)."
}

# The wrapper module of the release: pinned here, or written once into the cache.
KUBE_DIR=$HERE/kubernetes/$KUBE_VERSION
if [ ! -f "$KUBE_DIR/go.mod" ]; then
    KUBE_DIR=$CACHE_DIR/modules/kubernetes-$KUBE_VERSION
    if [ ! -f "$KUBE_DIR/go.sum" ]; then
        log "Kubernetes $KUBE_VERSION is not pinned in tests/cluster/kubernetes/: wrapping it into $KUBE_DIR"
        bash "$HERE/kubernetes/wrapper.sh" "$KUBE_VERSION" "$KUBE_DIR.tmp.$$" ||
            { rm -rf "$KUBE_DIR.tmp.$$"; die "cannot wrap Kubernetes $KUBE_VERSION (is it a release the Go module proxy serves?)"; }
        rm -rf "$KUBE_DIR"
        mv "$KUBE_DIR.tmp.$$" "$KUBE_DIR"
    fi
fi
for mod in "$KUBE_DIR" "$HERE/etcd" "$HERE/containerd"; do
    check_go "$mod/go.mod"
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
[ "$(required_version "$KUBE_DIR/go.mod" k8s.io/kubernetes)" = "$KUBE_VERSION" ] ||
    die "$KUBE_DIR/go.mod does not require k8s.io/kubernetes $KUBE_VERSION"
ETCD_VERSION=$(required_version "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$ETCD_VERSION" ] || die "could not find go.etcd.io/etcd/server/v3 in tests/cluster/etcd/go.mod"
CONTAINERD_VERSION=$(required_version "$HERE/containerd/go.mod" github.com/containerd/containerd/v2)
[ -n "$CONTAINERD_VERSION" ] || die "could not find github.com/containerd/containerd/v2 in tests/cluster/containerd/go.mod"

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
CONTAINERD_LDFLAGS="-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}"
BUILD_FLAGS=(-mod=readonly -trimpath)

KEY=$(
    {
        printf 'go: %s\n' "$GO_VERSION_LINE"
        printf 'env: CGO_ENABLED=%s GOOS=%s GOARCH=%s\n' "$CGO_ENABLED" "$(go env GOOS)" "$(go env GOARCH)"
        printf 'flags: %s\nkube-ldflags: %s\netcd-ldflags: %s\ncontainerd-ldflags: %s\n' \
            "${BUILD_FLAGS[*]}" "$KUBE_LDFLAGS" "$ETCD_LDFLAGS" "$CONTAINERD_LDFLAGS"
        for f in "$KUBE_DIR/go.mod" "$KUBE_DIR/go.sum" "$HERE"/etcd/go.{mod,sum} "$HERE"/containerd/go.{mod,sum}; do
            printf '== %s\n' "${f##*/tests/cluster/}"
            cat "$f"
        done
    } | sha256sum | cut -c1-16
)
BIN_DIR="$CACHE_DIR/bin/${KUBE_VERSION}-etcd${ETCD_VERSION}-containerd${CONTAINERD_VERSION}-${KEY}"

KUBE_COMMANDS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)
CONTAINERD_COMMANDS=(containerd containerd-shim-runc-v2 ctr)
have_binaries() {
    local name
    for name in "${KUBE_COMMANDS[@]}" etcd "${CONTAINERD_COMMANDS[@]}"; do
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
build kube-apiserver "$KUBE_DIR" k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
build etcd "$HERE/etcd" go.etcd.io/etcd/server/v3 "$ETCD_LDFLAGS"
for name in "${KUBE_COMMANDS[@]:1}"; do
    build "$name" "$KUBE_DIR" "k8s.io/kubernetes/cmd/$name" "$KUBE_LDFLAGS"
done
for name in "${CONTAINERD_COMMANDS[@]}"; do
    build "$name" "$HERE/containerd" "github.com/containerd/containerd/v2/cmd/$name" "$CONTAINERD_LDFLAGS"
done

cat >"$BIN_DIR/.VERSIONS.tmp.$$" <<EOF
${KUBE_COMMANDS[*]} $KUBE_VERSION
etcd $ETCD_VERSION
${CONTAINERD_COMMANDS[*]} $CONTAINERD_VERSION
$GO_VERSION_LINE
EOF
mv -f "$BIN_DIR/.VERSIONS.tmp.$$" "$BIN_DIR/VERSIONS"

have_binaries || die "binaries missing in $BIN_DIR after build"
log "ready: $BIN_DIR"
printf '%s\n' "$BIN_DIR"
