#!/usr/bin/env bash
# Create (or update) the Python virtualenv with moto and the AWS CLI for the end-to-end tests.
#
# Usage:   VENV=$(tests/python/install.sh)
#          "$VENV/bin/moto_server" --help; "$VENV/bin/aws" --version
#
# Only the virtualenv's directory is printed on stdout (as the last and only line); all logs go
# to stderr. The virtualenv lives outside the work tree, in
#   ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/venv
# and is rebuilt only when tests/python/requirements.txt or the Python version changed (their
# hash is stored in the virtualenv), so a rerun is instant.
#
# Never skips silently: without python3 and its venv module, or when PyPI cannot be reached, it
# exits non-zero with an explanation.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}
VENV="$CACHE_DIR/venv"
REQUIREMENTS="$HERE/requirements.txt"

log() { printf 'python/install.sh: %s\n' "$*" >&2; }
die() {
    printf 'python/install.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 ||
    die "'python3' not found on PATH. Install Python >= 3.9 - the e2e tests run moto and the AWS CLI from it."
command -v flock >/dev/null 2>&1 ||
    die "'flock' not found on PATH (package util-linux); it is needed to make concurrent runs safe."
command -v sha256sum >/dev/null 2>&1 || die "'sha256sum' not found on PATH (package coreutils)."

KEY=$(
    {
        python3 -c 'import sys; print(sys.version)'
        cat "$REQUIREMENTS"
    } | sha256sum | cut -c1-16
)

up_to_date() {
    [ "$(cat "$VENV/.requirements-key" 2>/dev/null)" = "$KEY" ] &&
        [ -x "$VENV/bin/aws" ] && [ -x "$VENV/bin/moto_server" ]
}

if up_to_date; then
    log "up to date: $VENV"
    printf '%s\n' "$VENV"
    exit 0
fi

mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
LOCK="$CACHE_DIR/venv.lock"
exec 9>"$LOCK" || die "cannot open lock file $LOCK"
if ! flock -n 9; then
    log "another install is running; waiting for $LOCK ..."
    flock 9
fi
if up_to_date; then # the other run did it
    printf '%s\n' "$VENV"
    exit 0
fi

# A fresh virtualenv rather than an upgrade in place, so no package left over from older pins
# can change what the tests run.
log "creating $VENV from tests/python/requirements.txt (about a minute) ..."
rm -rf "$VENV"
python3 -m venv "$VENV" ||
    die "python3 -m venv failed; on Debian install python3-venv"
if ! "$VENV/bin/python" -m pip install --require-virtualenv --no-input --quiet \
    -r "$REQUIREMENTS" >&2; then
    rm -rf "$VENV"
    die "pip could not install tests/python/requirements.txt (see above). Is PyPI reachable?"
fi
[ -x "$VENV/bin/aws" ] && [ -x "$VENV/bin/moto_server" ] || die "aws or moto_server missing in $VENV after pip install"
printf '%s\n' "$KEY" >"$VENV/.requirements-key"
log "ready: $VENV"
printf '%s\n' "$VENV"
