#!/usr/bin/env bash
# Find or build a Terraform-compatible binary (Terraform or OpenTofu >= 1.6, for `test`) for the
# modules in terraform/.
#
# Usage:   TF=$(scripts/install-terraform.sh)
#          (cd terraform/modules/trust-policy && "$TF" init -backend=false && "$TF" test)
#
# Prints only the binary's path on stdout; logs go to stderr. The first of these wins:
#   1. $IRSA_TERRAFORM (a path or a command name); an unusable one is an error, not skipped
#   2. `terraform` on PATH
#   3. `tofu` on PATH
#   4. OpenTofu $TOFU_VERSION, built once from the Go module proxy into
#      ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/bin/tofu-<key>/tofu
# <key> is a hash of the pin and `go version`, so a pin change builds into a new directory and a
# rerun returns at once. A Terraform or OpenTofu older than 1.6 (no `test` command) is passed
# over. Fails loudly (exit 1) if Go or the module proxy is unavailable: the tests never skip.
#
# `go install github.com/opentofu/opentofu/cmd/tofu@VERSION` is refused ("The go.mod file for
# the module providing named packages contains one or more replace directives"), so the module
# is downloaded from the proxy and built in its own directory, with its own go.mod (replace and
# godebug lines included), the way its release build (.goreleaser.yaml) does.
set -euo pipefail

# Latest stable release on the Go module proxy (`go list -m -versions github.com/opentofu/opentofu`).
TOFU_VERSION=v1.12.6
TOFU_MODULE=github.com/opentofu/opentofu

log() { printf 'install-terraform.sh: %s\n' "$*" >&2; }
die() {
    printf 'install-terraform.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# version_of BIN: the version `BIN version -json` reports (Terraform and OpenTofu both name the
# field terraform_version), empty if it reports none. No upgrade check over the network.
version_of() {
    CHECKPOINT_DISABLE=1 "$1" version -json 2>/dev/null |
        sed -n 's/.*"terraform_version": *"\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# new_enough VERSION: true for 1.6 and later, the first release with `test`.
new_enough() {
    local major minor
    IFS=. read -r major minor _ <<<"$1"
    [ -n "$major" ] && [ -n "$minor" ] && { [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 6 ]; }; }
}

if [ -n "${IRSA_TERRAFORM:-}" ]; then
    bin=$(command -v -- "$IRSA_TERRAFORM") && [ -f "$bin" ] && [ -x "$bin" ] ||
        die "IRSA_TERRAFORM=$IRSA_TERRAFORM is not an executable file or a command on PATH"
    version=$(version_of "$bin")
    new_enough "$version" ||
        die "IRSA_TERRAFORM=$bin reports version '${version:-none}'; Terraform or OpenTofu 1.6 or later is needed (terraform test)"
    log "using \$IRSA_TERRAFORM: $bin ($version)"
    printf '%s\n' "$bin"
    exit 0
fi

for name in terraform tofu; do
    bin=$(command -v "$name" 2>/dev/null) || continue
    version=$(version_of "$bin")
    if new_enough "$version"; then
        log "using $name on PATH: $bin ($version)"
        printf '%s\n' "$bin"
        exit 0
    fi
    log "passing over $bin: version '${version:-unknown}' is older than 1.6 (no terraform test)"
done

CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}

command -v go >/dev/null 2>&1 ||
    die "no terraform or tofu 1.6+ on PATH, and 'go' not found on PATH to build OpenTofu $TOFU_VERSION from the Go module proxy (or set IRSA_TERRAFORM)"
command -v flock >/dev/null 2>&1 || die "'flock' not found on PATH (package util-linux)"
command -v sha256sum >/dev/null 2>&1 || die "'sha256sum' not found on PATH (package coreutils)"

export CGO_ENABLED=0
# Only the module proxy is reachable: never download another Go toolchain.
export GOTOOLCHAIN=local

GO_VERSION_LINE=$(go version) || die "'go version' failed"
KEY=$(printf '%s\n' "$GO_VERSION_LINE" "opentofu $TOFU_VERSION" "build 1" | sha256sum | cut -c1-16)
DIR="$CACHE_DIR/bin/tofu-$KEY"

if [ -x "$DIR/tofu" ]; then
    log "up to date: $DIR/tofu"
    printf '%s\n' "$DIR/tofu"
    exit 0
fi

mkdir -p "$DIR" || die "cannot create $DIR"
exec 9>"$CACHE_DIR/install-terraform.lock" || die "cannot open $CACHE_DIR/install-terraform.lock"
if ! flock -n 9; then
    log "another install-terraform.sh is running; waiting ..."
    flock 9
fi

if [ ! -x "$DIR/tofu" ]; then
    log "no terraform or tofu 1.6+ on PATH: building OpenTofu $TOFU_VERSION (a cold build takes several minutes) ..."
    start=$SECONDS
    if ! download=$(go mod download -json "$TOFU_MODULE@$TOFU_VERSION" 2>&1); then
        printf '%s\n' "$download" >&2
        die "cannot download $TOFU_MODULE@$TOFU_VERSION (see above). Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
    fi
    src=$(printf '%s\n' "$download" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$src" ] && [ -f "$src/go.mod" ] ||
        die "go mod download $TOFU_MODULE@$TOFU_VERSION gave no source directory: $download"
    # A scratch directory renamed into place, so a half-written binary is never visible.
    out=$(mktemp -d "$DIR/.build.XXXXXX")
    # -mod=readonly: the module's go.sum is complete, and the module cache is read-only.
    # version.dev=no is what the release build sets, so `tofu version` says 1.x.y, not 1.x.y-dev.
    if ! (cd "$src" && go build -mod=readonly -trimpath -o "$out/tofu" \
        -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" ./cmd/tofu) >&2; then
        rm -rf "$out"
        die "building OpenTofu $TOFU_VERSION failed (see above). Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
    fi
    mv -f "$out/tofu" "$DIR/tofu"
    rm -rf "$out"
    log "tofu: built in $((SECONDS - start))s"
    printf '%s\n' "opentofu $TOFU_VERSION" "$GO_VERSION_LINE" >"$DIR/VERSIONS"
fi

version=$(version_of "$DIR/tofu")
[ "v$version" = "$TOFU_VERSION" ] ||
    die "$DIR/tofu reports version '${version:-none}', expected $TOFU_VERSION; remove $DIR and rerun"
log "ready: $DIR/tofu"
printf '%s\n' "$DIR/tofu"
