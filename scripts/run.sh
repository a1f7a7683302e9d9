#!/usr/bin/env bash
# Installs what is missing, builds tcp-flow-exporter and starts it with its
# defaults (metrics on :10420/metrics). Extra arguments go to the exporter.
# Loading BPF needs root: sudo is used when you are not root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked
if [ "$(id -u)" -eq 0 ]; then
    exec target/release/tcp-flow-exporter "$@"
fi
exec sudo target/release/tcp-flow-exporter "$@"
