# The eipool image, for machines with registry access. scripts/image builds the same layout on a
# machine without (buildah, nothing pulled); scripts/check-image compares the two, by file list
# and config, on every test run.
#   docker build --build-arg EIPOOL_GIT_REVISION=$(git rev-parse HEAD) \
#     --build-arg EIPOOL_IMAGE_SOURCE=https://git.example.com/sre/eipool -t eipool:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
ARG EIPOOL_GIT_REVISION=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# No .git in the build context: the revision for `eipool --version` comes in as an argument.
RUN EIPOOL_GIT_REVISION=$EIPOOL_GIT_REVISION cargo build --release --locked -p eipool --bin eipool

# The runtime from Debian packages (glibc, libgcc, CA certificates, user 65532), by the same
# script scripts/image runs.
FROM debian:bookworm-slim AS runtime
COPY scripts/image-rootfs /usr/local/bin/image-rootfs
RUN apt-get update -qq && image-rootfs /rootfs

# No shell, non-root.
FROM scratch
ARG EIPOOL_VERSION=0.1.0
ARG EIPOOL_GIT_REVISION=unknown
ARG EIPOOL_IMAGE_SOURCE=https://eipool.invalid/eipool
COPY --from=runtime /rootfs/ /
COPY --from=runtime --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
COPY --from=build /src/target/release/eipool /usr/local/bin/eipool
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /home/nonroot
USER 65532:65532
LABEL org.opencontainers.image.title=eipool \
      org.opencontainers.image.version=$EIPOOL_VERSION \
      org.opencontainers.image.revision=$EIPOOL_GIT_REVISION \
      org.opencontainers.image.source=$EIPOOL_IMAGE_SOURCE \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.base.name=scratch
ENTRYPOINT ["/usr/local/bin/eipool"]
