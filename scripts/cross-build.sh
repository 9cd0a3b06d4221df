#!/usr/bin/env bash
# Build irsa-webhook for a Linux architecture on this machine's own, compiling across instead of
# emulating: what the Dockerfile's build stage runs (on the build machine's platform, for each
# platform of the image), and what you can run by hand on Debian.
#
#   scripts/cross-build.sh ARCH PROFILE OUT     # ARCH: amd64 or arm64 (Docker's TARGETARCH)
#   scripts/cross-build.sh arm64 dist /out/irsa-webhook
#
# For another architecture than this machine's it installs Debian's cross C compiler and C
# library (ring and mimalloc compile C; gcc-aarch64-linux-gnu or gcc-x86-64-linux-gnu, and
# libc6-dev-<arch>-cross: apt-get, so root) and rustup's standard library for the target, then runs
# `cargo build --profile PROFILE --locked --target <triple>` with that compiler as C compiler and
# linker. The glibc linked against is then the builder's Debian release's, the one distroless/cc
# of the same release carries. OUT gets the binary (mode 0755).
set -euo pipefail

die() {
    printf 'cross-build.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
[ $# -eq 3 ] || die "usage: scripts/cross-build.sh ARCH PROFILE OUT (ARCH amd64 or arm64)"
arch=$1 profile=$2 out=$3
case $arch in
# The Rust target, the GNU tool prefix, Debian's cross gcc package.
amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu gcc=gcc-x86-64-linux-gnu ;;
arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu gcc=gcc-aarch64-linux-gnu ;;
*) die "unsupported architecture '$arch' (amd64 or arm64)" ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "rustc -vV names no host"
if [ "$host" != "$triple" ]; then
    if ! command -v "$gnu-gcc" >/dev/null; then
        command -v apt-get >/dev/null || die "$gnu-gcc not found and no apt-get to install it"
        printf 'cross-build.sh: installing %s libc6-dev-%s-cross (Debian)\n' "$gcc" "$arch" >&2
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$gcc" "libc6-dev-$arch-cross" >/dev/null
    fi
    if ! rustup target list --installed | grep -qx "$triple"; then
        rustup target add "$triple"
    fi
    # Cargo's and the cc crate's per-target variables: the target triple upper-cased or with
    # dashes as underscores.
    env_triple=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${env_triple}_LINKER=$gnu-gcc"
    export "CC_${triple//-/_}=$gnu-gcc"
    export "AR_${triple//-/_}=$gnu-ar"
fi

cargo build --profile "$profile" --locked --target "$triple"
target_dir=${CARGO_TARGET_DIR:-target}
# Cargo names the `dev` profile's output directory `debug`.
dir=$profile
[ "$profile" = dev ] && dir=debug
install -D -m 0755 "$target_dir/$triple/$dir/irsa-webhook" "$out"
printf 'cross-build.sh: %s (%s, %s)\n' "$out" "$triple" "$profile" >&2
