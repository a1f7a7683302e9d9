# Multi-stage build of tcp-flow-exporter.
#   docker build -t tcp-flow-exporter:0.1.0 .
# Needs BuildKit (the default builder of Docker 23+ and of docker compose)
# for the cache mounts below.
# Run it with CAP_BPF, CAP_PERFMON (and CAP_SYS_RESOURCE on kernels before
# 5.11) and /sys/kernel/btf: see docker-compose.yml and deploy/.

FROM rust:1-bookworm AS build
# clang compiles the BPF programs; libbpf-sys builds its vendored libbpf with
# make, gcc, pkg-config, libelf and zlib; libbpf-cargo formats the generated
# skeleton with rustfmt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libelf-dev zlib1g-dev pkg-config make gcc \
    && rm -rf /var/lib/apt/lists/* \
    && rustup component add rustfmt
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY bpf bpf
COPY vmlinux vmlinux
COPY src src
# Cargo.toml declares the two benchmarks by name, and cargo does not load a
# manifest whose declared targets have no source, so they are copied; they
# are not built. tests/ is found by convention only and is left out.
COPY benches benches
# The crate registry and target/ live in BuildKit cache mounts: a rebuild
# after a source change downloads nothing and recompiles only this crate
# (a layer of pre-built dependencies would need stub sources for the
# library, the binary, build.rs and both benchmarks). The binary is copied
# out of the cache mount, which the next stage cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tcp-flow-exporter \
    && install -m 0755 target/release/tcp-flow-exporter /usr/local/bin/tcp-flow-exporter

FROM debian:bookworm-slim
# The binary links libelf and zlib dynamically; libbpf is built in. Nothing
# else: no shell tools are needed at run time, and no CA certificates (the
# exporter makes no outgoing connections).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libelf1 zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/tcp-flow-exporter /usr/local/bin/tcp-flow-exporter
LABEL org.opencontainers.image.title="tcp-flow-exporter" \
      org.opencontainers.image.description="Prometheus exporter for per-flow TCP byte counters, counted in the kernel with eBPF" \
      org.opencontainers.image.licenses="Apache-2.0"
EXPOSE 10420
# UID 0, so that the capabilities the runtime adds are effective (Kubernetes
# cannot grant a non-root user ambient capabilities); drop every other
# capability at run time, as deploy/ and docker-compose.yml do.
USER 0
# No HEALTHCHECK: the slim image has no curl or wget, the binary has no
# self-check mode, and Kubernetes ignores HEALTHCHECK in favour of its probes
# (deploy/daemonset.yaml probes /healthz).
ENTRYPOINT ["/usr/local/bin/tcp-flow-exporter"]
