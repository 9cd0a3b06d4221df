#!/usr/bin/env bash
# Install the tools the chart tests need, once, into a cache directory.
#
# Usage:   TOOLS=$(scripts/install-tools.sh)
#          "$TOOLS/helm" version; "$TOOLS/helm4" version; "$TOOLS/kubeconform" -v
#          ls "$TOOLS/schemas"      # Kubernetes JSON schemas, e.g. v1.37.0-local-strict/
#
# Installs into ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/bin/tools-<key>/:
#   helm         Helm 3, `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`
#   helm4        Helm 4, `go install helm.sh/helm/v4/cmd/helm@$HELM4_VERSION` (the chart must
#                work with both)
#   kubeconform  `go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION`
#   amazon-eks-pod-identity-webhook
#                the reference webhook, `go install
#                github.com/aws/amazon-eks-pod-identity-webhook@$REFERENCE_VERSION`, for
#                benches/versus_reference.rs
#   venv/        a Python venv with PyPI's kubernetes-validate, which ships the Kubernetes JSON
#                schemas in the package, so validation needs no download at test time
#   schemas/     that package's $SCHEMA_VERSION-local and -local-strict schemas, made loadable by
#                kubeconform (see below), for
#                `kubeconform -kubernetes-version 1.37.0 -schema-location "$TOOLS/schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"`
# <key> is a hash of the pins below and `go version`, so a pin change installs into a new
# directory and a rerun returns at once. Only the directory is printed on stdout; logs go to
# stderr. Fails loudly (exit 1) if Go, Python or the package registries are unavailable: the
# chart tests never skip.
set -euo pipefail

HELM_VERSION=v3.22.0
HELM4_VERSION=v4.3.1
KUBECONFORM_VERSION=v0.8.0
# The newest release the Go module proxy serves (`go list -m -versions
# github.com/aws/amazon-eks-pod-identity-webhook`).
REFERENCE_VERSION=v0.6.17
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes version whose schemas are prepared for kubeconform (the newest the tests run,
# tests/cluster/kubernetes/); they live in schemas/<version>-*, so a new one is added to the
# same directory without rebuilding helm.
SCHEMA_VERSION=v1.37.0

CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}

log() { printf 'install-tools.sh: %s\n' "$*" >&2; }
die() {
    printf 'install-tools.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

command -v go >/dev/null 2>&1 ||
    die "'go' not found on PATH: helm and kubeconform are built with 'go install' from the Go module proxy"
command -v python3 >/dev/null 2>&1 ||
    die "'python3' not found on PATH: the Kubernetes schemas come from PyPI's kubernetes-validate"
command -v flock >/dev/null 2>&1 || die "'flock' not found on PATH (package util-linux)"
command -v sha256sum >/dev/null 2>&1 || die "'sha256sum' not found on PATH (package coreutils)"

export CGO_ENABLED=0
# Only the module proxy is reachable: never download another Go toolchain.
export GOTOOLCHAIN=local

GO_VERSION_LINE=$(go version) || die "'go version' failed"
KEY=$(
    printf '%s\n' "$GO_VERSION_LINE" "helm $HELM_VERSION" "helm4 $HELM4_VERSION" \
        "kubeconform $KUBECONFORM_VERSION" "kubernetes-validate $KUBERNETES_VALIDATE_VERSION" \
        "reference $REFERENCE_VERSION" \
        "schemas rewrite 1" "version ldflags 2" |
        sha256sum | cut -c1-16
)
DIR="$CACHE_DIR/bin/tools-$KEY"

complete() {
    [ -x "$DIR/helm" ] && [ -x "$DIR/helm4" ] && [ -x "$DIR/kubeconform" ] &&
        [ -x "$DIR/amazon-eks-pod-identity-webhook" ] &&
        [ -f "$DIR/schemas/$SCHEMA_VERSION-local-strict/_definitions.json" ]
}

if complete; then
    log "up to date: $DIR"
    printf '%s\n' "$DIR"
    exit 0
fi

mkdir -p "$DIR" || die "cannot create $DIR"
exec 9>"$CACHE_DIR/install-tools.lock" || die "cannot open $CACHE_DIR/install-tools.lock"
if ! flock -n 9; then
    log "another install-tools.sh is running; waiting ..."
    flock 9
fi

# go_install NAME MODULE_PATH@VERSION [LDFLAGS]: builds into a scratch GOBIN and renames into
# place, so a half-written binary is never visible.
go_install() {
    local name=$1 target=$2 ldflags="-s -w ${3:-}" gobin start
    if [ -x "$DIR/$name" ]; then
        return 0
    fi
    gobin=$(mktemp -d "$DIR/.gobin.XXXXXX")
    log "go install $target (a cold build takes a few minutes) ..."
    start=$SECONDS
    if ! GOBIN="$gobin" GOFLAGS=-trimpath go install -ldflags="$ldflags" "$target" >&2; then
        rm -rf "$gobin"
        die "go install $target failed. Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
    fi
    mv -f "$gobin/$(basename "${target%@*}")" "$DIR/$name"
    rm -rf "$gobin"
    log "$name: built in $((SECONDS - start))s"
}

# Sequential on purpose: each build already uses every core.
# The -X flags are what helm's own Makefile sets: the full version for `helm version`, and for
# helm 3 the Kubernetes version `helm template` and `helm lint` assume without --kube-version
# (1.<client-go minor>; left out, helm 3 assumes 1.20). Helm 4 reads the latter from its build.
helm_kube_minor() {
    local gomod
    gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$gomod" ] || die "cannot download helm.sh/helm/v3@$HELM_VERSION's go.mod from the Go module proxy"
    awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$gomod"
}
if [ ! -x "$DIR/helm" ]; then
    minor=$(helm_kube_minor)
    [ -n "$minor" ] || die "no k8s.io/client-go in helm $HELM_VERSION's go.mod"
    go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
        "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
fi
go_install helm4 "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION" \
    "-X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION"
go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"
go_install amazon-eks-pod-identity-webhook \
    "github.com/aws/amazon-eks-pod-identity-webhook@$REFERENCE_VERSION" \
    "-X main.webhookVersion=$REFERENCE_VERSION"

if [ ! -f "$DIR/schemas/$SCHEMA_VERSION-local-strict/_definitions.json" ]; then
    if [ ! -x "$DIR/venv/bin/python" ] || ! "$DIR/venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
        log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas) ..."
        rm -rf "$DIR/venv"
        python3 -m venv "$DIR/venv" >&2 ||
            die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$DIR/venv/bin/pip" install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2 ||
            die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed. Is PyPI reachable?"
    fi
    src=$("$DIR/venv/bin/python" -c \
        'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')
    # kubernetes-validate's schemas refer to their shared definitions as
    # "/api/_definitions.json", relative to an https $id that only its own resolver maps to a
    # file; kubeconform would fail to compile them (and report "could not find schema"). Point
    # the references at the local file instead.
    tmp=$(mktemp -d "$DIR/.schemas.XXXXXX")
    for variant in local local-strict; do
        [ -d "$src/$SCHEMA_VERSION-$variant" ] ||
            die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no $SCHEMA_VERSION-$variant schemas in $src"
        cp -r "$src/$SCHEMA_VERSION-$variant" "$tmp/"
        find "$tmp/$SCHEMA_VERSION-$variant" -name '*.json' -exec \
            sed -i "s#\"/api/_definitions.json#\"file://$DIR/schemas/$SCHEMA_VERSION-$variant/_definitions.json#g" {} +
    done
    rm -rf "$DIR/schemas"
    mv "$tmp" "$DIR/schemas"
fi

cat >"$DIR/VERSIONS" <<EOF
helm $HELM_VERSION
helm4 $HELM4_VERSION
kubeconform $KUBECONFORM_VERSION
amazon-eks-pod-identity-webhook $REFERENCE_VERSION
kubernetes-validate $KUBERNETES_VALIDATE_VERSION (schemas $SCHEMA_VERSION)
$GO_VERSION_LINE
EOF

complete || die "tools missing in $DIR after install"
log "ready: $DIR"
printf '%s\n' "$DIR"
