# syntax=docker/dockerfile:1
#
# The irsa-webhook image: one binary, `serve` (the webhook) and `discovery` (the OIDC discovery
# server), non-root, nothing else in it.
#
#   docker build -t ghcr.io/irsa-webhook/irsa-webhook:0.1.0 .
#
# The binary is the `dist` profile's (`cargo build --profile dist --locked`: the release build
# with fat LTO and one codegen unit, the least CPU per admission of the profiles; see
# bench/README.md). A multi-platform build (`docker buildx build --platform
# linux/amd64,linux/arm64 .`) compiles every platform's binary on the build machine's own
# platform with a cross compiler (scripts/cross-build.sh), never under emulation: only the
# final stage, which runs nothing, is the target platform's. Why distroless/cc and not distroless/static: that build targets x86_64/aarch64-unknown-linux-gnu, so the binary links
# glibc (and libgcc_s for unwinding). distroless/cc carries exactly those, from the same Debian
# release as the builder, so the glibc the binary was linked against is the one it runs with.
# distroless/static would need a musl build (another target, musl-tools for ring's and
# mimalloc's C code, and a different allocator behaviour than the one we test and benchmark).

ARG RUST_VERSION=1.95
ARG DEBIAN=trixie

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
# The platform of the image being built (amd64 or arm64), set by buildx.
ARG TARGETARCH
WORKDIR /src
# ring and mimalloc compile C: rust:*-slim has gcc and libc6-dev for its own platform;
# cross-build.sh adds Debian's cross gcc and C library, and rustup's target, for the other.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/cross-build.sh "$TARGETARCH" dist /out/irsa-webhook \
    && mkdir -p /out/links && ln -s /usr/local/bin/irsa-webhook /out/links/webhook

FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /out/irsa-webhook /usr/local/bin/irsa-webhook
# /webhook, the EKS pod identity webhook's entrypoint: run under that name the binary is `serve`
# with that webhook's flags and defaults, so its manifests work with only `image:` changed.
# (Copied as a directory so the symlink stays a symlink.)
COPY --from=build /out/links/ /
# 65532 is distroless's "nonroot"; numeric so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# Webhook HTTPS, webhook metrics, discovery documents, discovery metrics.
EXPOSE 8443 9999 8080 8081
ENTRYPOINT ["/usr/local/bin/irsa-webhook"]
CMD ["--help"]

LABEL org.opencontainers.image.title="irsa-webhook" \
      org.opencontainers.image.description="IAM Roles for Service Accounts on any Kubernetes: mutating webhook and OIDC discovery server" \
      org.opencontainers.image.source="https://github.com/irsa-webhook/irsa-webhook" \
      org.opencontainers.image.licenses="Apache-2.0"
