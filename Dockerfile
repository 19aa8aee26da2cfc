# The eipool image: a static-ish Rust binary on a distroless, non-root runtime.
#   docker build -t eipool:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p eipool --bin eipool

# glibc + CA certificates, no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/eipool /usr/local/bin/eipool
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/eipool"]
