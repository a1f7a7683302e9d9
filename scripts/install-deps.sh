#!/usr/bin/env bash
# Installs what building tcp-flow-exporter needs on Debian or Ubuntu (x86_64),
# skipping what is already there. With --test, also what the tests need;
# with --bench, also what the benchmarks need (both may be given).
# Needs Rust (rustup); uses sudo for apt-get when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root, or install sudo" >&2; exit 1; }
    sudo="sudo"
fi

test=false
bench=false
for arg in "$@"; do
    case "$arg" in
        --test) test=true ;;
        --bench) bench=true ;;
        *) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
    esac
done

# clang compiles bpf/*.bpf.c; libbpf-sys builds its vendored libbpf with make,
# gcc, libelf and zlib.
packages=(clang libelf-dev zlib1g-dev pkg-config make gcc)
if $test; then
    # setpriv and unshare (util-linux) drive the privilege and BTF error tests;
    # ip (iproute2) builds the network namespace of the loopback filter test;
    # headless chromium renders the landing page; python3-venv holds the
    # manifest validator of scripts/check-deploy.sh; python3 runs the
    # identity tests' clients and scripts/cloud-ranges.py; nft sets up the
    # DNAT the conntrack test resolves; openssl makes the TLS tests'
    # certificates and reads the served one; curl is their HTTPS client;
    # bpftool lists what the privilege tests leave loaded and tries to detach.
    packages+=(util-linux iproute2 chromium python3-venv python3 nftables openssl curl bpftool)
fi
if $bench; then
    # cyclictest (rt-tests) measures real-time wake-up delays while
    # benches/connections.rs scrapes; benches/exporter.rs times scrapes
    # with curl.
    packages+=(rt-tests curl)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libbpf-cargo formats the generated skeleton with rustfmt; tests run clippy.
for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

if $test; then
    scripts/fetch-prometheus.sh >/dev/null
fi
