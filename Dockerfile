# Multi-stage build of tcp-flow-exporter.
#   docker build -t tcp-flow-exporter .
# Run it with CAP_BPF, CAP_PERFMON (and CAP_SYS_RESOURCE on kernels before
# 5.11) and /sys/kernel/btf: see docker-compose.yml and deploy/.

FROM rust:1-bookworm AS build
# clang compiles the BPF program; libbpf-sys builds the vendored libbpf with
# make, libelf and zlib; libbpf-cargo formats the generated skeleton with
# rustfmt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libelf-dev zlib1g-dev pkg-config make \
    && rm -rf /var/lib/apt/lists/* \
    && rustup component add rustfmt
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY bpf bpf
COPY vmlinux vmlinux
COPY src src
# Cargo.toml declares the benchmarks, so their sources must exist to load
# the manifest; they are not built.
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin tcp-flow-exporter

FROM debian:bookworm-slim
# The binary links libelf and zlib dynamically; libbpf is built in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libelf1 zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tcp-flow-exporter /usr/local/bin/tcp-flow-exporter
EXPOSE 10420
# Root, so that the capabilities the runtime adds are effective (no ambient
# capabilities in Kubernetes); drop everything else at run time.
USER 0
ENTRYPOINT ["/usr/local/bin/tcp-flow-exporter"]
