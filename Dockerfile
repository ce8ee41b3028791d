# syntax=docker/dockerfile:1
#
# The CloudKit controller image: the `cloudkit` binary on distroless, as user
# 65532 (nonroot), writing nothing (runs with readOnlyRootFilesystem: true).
#
#   docker build -t cloudkit:dev .
#   docker build --build-arg CLOUDS=aws -t cloudkit:aws .     # AWS backends only
#
# Build arguments:
#   CLOUDS        comma-separated clouds to compile in, each a Cargo feature of
#                 the cloudkit crate: aws, azure, gcp (default: all three).
#                 Kinds on a cloud left out report UnsupportedForProvider.
#   RUST_VERSION  Rust toolchain of the builder (workspace rust-version: 1.94).
#   PROFILE       Cargo profile: release (default) or dev.
#
# Helm: charts/cloudkit runs it with `controller --metrics-addr=...` as args.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
ARG CLOUDS=aws,azure,gcp
ARG PROFILE=release
WORKDIR /src
# Only what the workspace needs to build (see .dockerignore); tests/e2e is a
# workspace member, so its manifest must be there even though it is not built.
COPY Cargo.toml Cargo.lock ./
COPY crds crds
COPY drift drift
COPY reconcilers reconcilers
COPY controller controller
COPY tests/e2e tests/e2e
# --no-default-features + --features: exactly the clouds asked for.
# --locked: the dependencies in Cargo.lock, nothing newer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --profile "${PROFILE}" -p cloudkit \
        --no-default-features --features "${CLOUDS}" \
    && dir="$([ "${PROFILE}" = dev ] && echo debug || echo "${PROFILE}")" \
    && install -D -m 0755 "target/${dir}/cloudkit" /out/cloudkit

# cc: glibc and libgcc, which the binary links (ring is C and assembly); the
# builder is bookworm too, so the glibc versions match.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="cloudkit" \
      org.opencontainers.image.description="CloudKit: a Kubernetes controller for cloud resources" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="https://cloudkit.dev"
COPY --from=builder --chown=0:0 --chmod=0755 /out/cloudkit /usr/local/bin/cloudkit
# distroless's nonroot user and group; the chart's podSecurityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cloudkit"]
CMD ["controller", "--log-format=json"]
