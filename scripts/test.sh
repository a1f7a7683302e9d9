#!/usr/bin/env bash
# Installs what is missing and runs every check CI runs: formatting, clippy,
# and the unit and integration tests. The integration tests load BPF, so their
# binaries run as root (through sudo when you are not root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
export PROMTOOL="$(scripts/fetch-prometheus.sh)/promtool"

cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings

if [ "$(id -u)" -ne 0 ]; then
    # Build as you, run each test binary as root.
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi
cargo test --locked
