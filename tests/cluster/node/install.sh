#!/usr/bin/env bash
# What a real node needs besides the Kubernetes and containerd binaries of ../install.sh: runc,
# the CNI plugins, iptables and conntrack from Debian's packages, and the images its pods run,
# built locally because nothing can be pulled:
#   pause.tar    localhost/pause:3.10     the pod sandbox (pause.c, static)
#   aws-cli.tar  localhost/aws-cli:dev    Debian (debootstrap minbase) + python3 + the AWS CLI
#                                         from PyPI (aws-cli-requirements.txt): sh, cat, base64
#
# Usage:   IMAGES=$(tests/cluster/node/install.sh)    # as root
#          tests/cluster/node/install.sh --packages   # only the Debian packages
#
# Only the images directory is printed on stdout (last line); logs go to stderr. Images are cached
# in ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/images/<key>/, keyed on this script, its inputs
# and the toolchain, so a rerun is instant.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE_DIR=${IRSA_CACHE_DIR:-${HOME:?HOME is not set; set IRSA_CACHE_DIR}/.cache/irsa-webhook}
SUITE=bookworm
MIRROR=${IRSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'node/install.sh: %s\n' "$*" >&2; }
die() {
    printf 'node/install.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "a node runs containers: run as root (the real-node tests and scripts/dev-cluster.sh need it)"

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------
packages=()
command -v runc >/dev/null || packages+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || packages+=(containernetworking-plugins)
command -v iptables >/dev/null || packages+=(iptables)
command -v conntrack >/dev/null || packages+=(conntrack)
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v ip >/dev/null || packages+=(iproute2)
command -v gcc >/dev/null || packages+=(gcc libc6-dev)
if [ ${#packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "need ${packages[*]} and there is no apt-get: install them"
    log "installing ${packages[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || die "apt-get update failed"
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${packages[@]}" >&2 ||
        die "apt-get install ${packages[*]} failed"
fi

[ "${1:-}" = --packages ] && exit 0

# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------
ARCH=$(uname -m)
KEY=$(
    {
        cat "$HERE/install.sh" "$HERE/pause.c" "$HERE/aws-cli-requirements.txt" "$REPO/scripts/oci-image.py"
        gcc --version | head -n1
        printf '%s %s %s\n' "$SUITE" "$MIRROR" "$ARCH"
    } | sha256sum | cut -c1-16
)
IMAGES="$CACHE_DIR/images/$KEY"
if [ -f "$IMAGES/pause.tar" ] && [ -f "$IMAGES/aws-cli.tar" ]; then
    log "up to date: $IMAGES"
    printf '%s\n' "$IMAGES"
    exit 0
fi
mkdir -p "$IMAGES"
exec 9>"$CACHE_DIR/images/.lock"
flock 9
work=$(mktemp -d "$CACHE_DIR/images/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

image() { python3 "$REPO/scripts/oci-image.py" "$@" >&2 || die "oci-image.py failed for $*"; }

if [ ! -f "$IMAGES/pause.tar" ]; then
    gcc -static -Os -Wall -Wextra -Werror -o "$work/pause" "$HERE/pause.c" || die "cannot compile pause.c (gcc, libc6-dev)"
    strip "$work/pause"
    # 65535, as upstream's pause image: nothing in a sandbox runs as root.
    image --output "$work/pause.tar" --name localhost/pause:3.10 --add "$work/pause:/pause:0755" \
        --user 65535:65535 --entrypoint '["/pause"]'
    mv "$work/pause.tar" "$IMAGES/pause.tar"
fi

if [ ! -f "$IMAGES/aws-cli.tar" ]; then
    start=$SECONDS
    rootfs="$work/rootfs"
    log "aws-cli: debootstrap $SUITE (minbase + python3) from $MIRROR ..."
    debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap failed (is the Debian mirror $MIRROR reachable?)"
    }
    py=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    site="$rootfs/usr/local/lib/python$py/dist-packages"
    log "aws-cli: the AWS CLI from PyPI for python $py ..."
    # Wheels for the image's Python and architecture, whatever Python runs this script.
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-compile \
        --no-deps --target "$site" \
        --only-binary=:all: --implementation cp --python-version "$py" \
        --platform "manylinux2014_$ARCH" --platform "manylinux_2_17_$ARCH" --platform "manylinux_2_28_$ARCH" \
        -r "$HERE/aws-cli-requirements.txt" >&2 || die "pip could not install the AWS CLI (is PyPI reachable?)"
    rm -rf "${site:?}/bin"
    cat >"$rootfs/usr/local/bin/aws" <<'EOF'
#!/usr/bin/python3
import sys

from awscli.clidriver import main

sys.exit(main())
EOF
    chmod 0755 "$rootfs/usr/local/bin/aws"
    chroot "$rootfs" aws --version >&2 || die "the AWS CLI does not run in the image"
    # Nothing a container needs from these; /dev, /proc and /sys are the runtime's.
    rm -rf "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/* "${rootfs:?}"/run/* \
        "${rootfs:?}"/var/cache/apt/* "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/* \
        "${rootfs:?}"/usr/share/doc "${rootfs:?}"/usr/share/man "${rootfs:?}"/usr/share/info "${rootfs:?}"/usr/share/locale
    image --output "$work/aws-cli.tar" --name localhost/aws-cli:dev --add "$rootfs:/" \
        --env PATH=/usr/local/bin:/usr/bin:/bin --env HOME=/tmp --user 1000:1000 \
        --entrypoint '["/bin/sh", "-c"]' --cmd '["aws --version && exec sleep infinity"]' --compress-level 1
    mv "$work/aws-cli.tar" "$IMAGES/aws-cli.tar"
    log "aws-cli: built in $((SECONDS - start))s, $(du -h "$IMAGES/aws-cli.tar" | cut -f1)"
fi

printf '%s\n' "$IMAGES"
