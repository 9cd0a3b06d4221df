#!/usr/bin/env bash
# Build actionlint, the GitHub Actions workflow linter, for tests/it/workflows.rs, and make sure
# ShellCheck is installed, so that actionlint also checks the workflows' `run:` scripts.
#
# Usage:   ACTIONLINT=$(scripts/install-actionlint.sh)
#          "$ACTIONLINT" -shellcheck shellcheck .github/workflows/*.yml
#
# `go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION` from the Go module
# proxy (GitHub release downloads are not reachable here), once, into
#   ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/bin/actionlint-<version>/actionlint
# A rerun returns at once. Only the binary's path is printed on stdout (as the last line); logs
# go to stderr. Fails loudly (exit 1) if Go, the module proxy or apt-get (for shellcheck) is
# unavailable: the workflow tests never skip.
set -euo pipefail

# A version the Go module proxy serves (`go list -m -versions github.com/rhysd/actionlint`).
ACTIONLINT_VERSION=v1.7.12
ACTIONLINT_PACKAGE=github.com/rhysd/actionlint/cmd/actionlint

CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}
DIR="$CACHE_DIR/bin/actionlint-$ACTIONLINT_VERSION"

log() { printf 'install-actionlint.sh: %s\n' "$*" >&2; }
die() {
    printf 'install-actionlint.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# Without shellcheck on PATH actionlint silently leaves the `run:` scripts unchecked.
if ! command -v shellcheck >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "'shellcheck' not found on PATH and there is no apt-get to install it; install ShellCheck (actionlint uses it to check the workflows' run: scripts)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    log "installing shellcheck (Debian package) ..."
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq shellcheck >/dev/null; } >&2 ||
        die "apt-get install shellcheck failed (see above); install ShellCheck by hand"
    command -v shellcheck >/dev/null 2>&1 || die "apt-get installed shellcheck but it is not on PATH"
fi

if [ -x "$DIR/actionlint" ]; then
    log "up to date: $DIR/actionlint"
    printf '%s\n' "$DIR/actionlint"
    exit 0
fi

command -v go >/dev/null 2>&1 ||
    die "'go' not found on PATH: actionlint $ACTIONLINT_VERSION is built with 'go install' from the Go module proxy"
command -v flock >/dev/null 2>&1 || die "'flock' not found on PATH (package util-linux)"

export CGO_ENABLED=0
# Only the module proxy is reachable: never download another Go toolchain.
export GOTOOLCHAIN=local
# The module's own go.mod and go.sum decide its dependencies, whatever the caller's GOFLAGS say.
export GOFLAGS=-mod=mod

mkdir -p "$DIR" || die "cannot create $DIR"
exec 9>"$CACHE_DIR/install-actionlint.lock" || die "cannot open $CACHE_DIR/install-actionlint.lock"
if ! flock -n 9; then
    log "another install-actionlint.sh is running; waiting ..."
    flock 9
fi

if [ ! -x "$DIR/actionlint" ]; then
    log "go install $ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION (a cold build takes a minute or two) ..."
    start=$SECONDS
    # A scratch GOBIN renamed into place, so a half-written binary is never visible.
    gobin=$(mktemp -d "$DIR/.gobin.XXXXXX")
    # The -X flag is what actionlint's release build sets, for `actionlint -version`.
    if ! GOBIN="$gobin" go install -trimpath \
        -ldflags="-s -w -X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION#v}" \
        "$ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION" >&2; then
        rm -rf "$gobin"
        die "go install $ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION failed (see above). Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
    fi
    mv -f "$gobin/actionlint" "$DIR/actionlint"
    rm -rf "$gobin"
    printf '%s\n' "actionlint $ACTIONLINT_VERSION" "$(go version)" >"$DIR/VERSIONS"
    log "actionlint: built in $((SECONDS - start))s"
fi

version=$("$DIR/actionlint" -version 2>/dev/null | head -n1) ||
    die "$DIR/actionlint does not run; remove $DIR and rerun"
[ "$version" = "${ACTIONLINT_VERSION#v}" ] ||
    die "$DIR/actionlint reports version '$version', expected ${ACTIONLINT_VERSION#v}; remove $DIR and rerun"
log "ready: $DIR/actionlint"
printf '%s\n' "$DIR/actionlint"
