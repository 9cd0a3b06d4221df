#!/usr/bin/env bash
# Build the irsa-webhook image as an OCI archive, without Docker, a registry or root.
#
#   scripts/build-image.sh [--binary PATH] [--name REPOSITORY:TAG] [--output FILE]
#
# Defaults: the binary the Dockerfile ships (`cargo build --profile dist --locked`: fat LTO; built
# when missing or older than the sources), localhost/irsa-webhook:dev, target/irsa-webhook-image.tar.
# The image is laid out like the Dockerfile's (distroless/cc): the binary at
# /usr/local/bin/irsa-webhook, the /webhook link the EKS pod identity webhook's manifests call,
# the shared libraries the binary links (glibc, libgcc_s) taken from this machine, CA
# certificates, /etc/passwd with nonroot, /tmp, and user 65532:65532. Reproducible: the same
# binary gives the same image digest.
#
# Load it into:  kind load image-archive target/irsa-webhook-image.tar
#                k3s ctr images import target/irsa-webhook-image.tar
#                ctr -n k8s.io images import target/irsa-webhook-image.tar
#                skopeo copy oci-archive:target/irsa-webhook-image.tar docker://REGISTRY/irsa-webhook:TAG
# The last line of output is the archive's path.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
name=localhost/irsa-webhook:dev
output=$REPO/target/irsa-webhook-image.tar

die() {
    printf 'build-image.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --name) name=${2:?--name needs REPOSITORY:TAG}; shift 2 ;;
    --output) output=${2:?--output needs a file}; shift 2 ;;
    -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed (scripts/oci-image.py writes the archive)"
command -v ldd >/dev/null || die "ldd is needed to find the libraries the binary links (package libc-bin)"

if [ -z "$binary" ]; then
    printf 'build-image.sh: cargo build --profile dist --locked (the image'"'"'s build: fat LTO)\n' >&2
    (cd "$REPO" && cargo build --profile dist --locked >&2) || die "cargo build --profile dist failed"
    binary=${CARGO_TARGET_DIR:-$REPO/target}/dist/irsa-webhook
fi
[ -x "$binary" ] || die "$binary is not an executable"
"$binary" --version >/dev/null 2>&1 || die "$binary does not run on this machine"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Debug symbols stay out of the image (a debug build carries hundreds of MB of them).
if command -v strip >/dev/null; then
    strip -o "$work/irsa-webhook" "$binary"
else
    cp "$binary" "$work/irsa-webhook"
fi

args=(--output "$output" --name "$name" --user 65532:65532
    --add "$work/irsa-webhook:/usr/local/bin/irsa-webhook:0755"
    --symlink /usr/local/bin/irsa-webhook:/webhook
    --dir /tmp:1777
    --entrypoint '["/usr/local/bin/irsa-webhook"]' --cmd '["--help"]'
    --expose 8443/tcp --expose 9999/tcp --expose 8080/tcp --expose 8081/tcp
    --label org.opencontainers.image.title=irsa-webhook
    --label "org.opencontainers.image.version=$("$binary" --version | awk '{ print $NF }')"
    --label org.opencontainers.image.source=https://github.com/irsa-webhook/irsa-webhook
    --label org.opencontainers.image.licenses=Apache-2.0)

# The libraries the binary links, each at the path the dynamic loader looks for it.
while read -r library; do
    [ -f "$library" ] || die "ldd named $library, which is not a file"
    args+=(--add "$(readlink -f "$library"):$library:0755")
done < <(ldd "$binary" | awk '/=> \// { print $3; next } /^[[:space:]]*\// { print $1 }')

printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$work/group"
args+=(--add "$work/passwd:/etc/passwd:0644" --add "$work/group:/etc/group:0644")
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        args+=(--add "$bundle:/etc/ssl/certs/ca-certificates.crt:0644")
        break
    fi
done

mkdir -p "$(dirname "$output")"
python3 "$REPO/scripts/oci-image.py" "${args[@]}" >&2 || die "scripts/oci-image.py failed"
printf '%s\n' "$output"
