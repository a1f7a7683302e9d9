#!/usr/bin/env bash
# Installs what is missing and runs every check CI runs: formatting, clippy,
# the offline checks of deploy/, prometheus/, grafana/ and the container
# files (scripts/check-deploy.sh), the unit and root integration tests on
# this machine's kernel (with a real Prometheus and headless Chromium), and
# the kernel matrix (scripts/kernel-matrix.sh) on the kernels of
# tests/kernels.conf, which starts first and runs beside the rest.
# Root tests are #[ignore]d in a plain `cargo test`; this script runs them
# with --include-ignored, as root (through sudo when you are not root).
#
#   TFE_MATRIX=0 scripts/test.sh   skips the kernel matrix (never in CI)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
prometheus_bin="$(scripts/fetch-prometheus.sh)"
export PROMTOOL="$prometheus_bin/promtool" PROMETHEUS="$prometheus_bin/prometheus"

if [ "$(id -u)" -ne 0 ]; then
    # Build as you, run each test binary as root.
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi

# What this kernel must do, from its row in tests/kernels.conf.
kernel=$(uname -r | cut -d. -f1,2)
row=$(awk -v k="$kernel" '$1 == k' tests/kernels.conf)
native_backends="" native_deep=""
if [ -n "$row" ]; then
    read -r _ _ native_backends TFE_EXPECT_AUTO TFE_UNSUPPORTED native_deep <<< "$row"
    [ "$TFE_UNSUPPORTED" = - ] && TFE_UNSUPPORTED=""
    export TFE_EXPECT_AUTO TFE_UNSUPPORTED
    # tests/agreement.rs runs identical traffic under each of them.
    export TFE_BACKENDS=$native_backends
else
    echo "*** test.sh: Linux $kernel has no row in tests/kernels.conf; backend expectations are not checked ***" >&2
fi

# CI as tests/support::in_ci reads it: set, and neither empty nor "false".
in_ci() { [ -n "${CI:-}" ] && [ "${CI}" != false ]; }

# The kernel matrix runs beside the tests on this kernel: its VMs are CPU
# bound (TCG), these tests mostly wait (a soak scraped once a second, web
# timeouts), and one after the other they took 58 minutes (2026-12-02).
# Niced, so that the VMs take the CPU these tests leave; its log is shown
# at the end, and a failure here stops it.
cargo test --locked --no-run
matrix_pid=""
if [ "${TFE_MATRIX:-1}" = 0 ] && ! in_ci; then
    echo "*** test.sh: TFE_MATRIX=0, the kernel matrix was NOT run ***" >&2
else
    TFE_TESTS_FILE="$PWD/target/kernel-matrix-tests.txt"
    scripts/kernel-matrix.sh --list-tests > "$TFE_TESTS_FILE"
    export TFE_TESTS_FILE
    echo "test.sh: the kernel matrix runs in the background, log: target/kernel-matrix.log"
    if [ "$(id -u)" -eq 0 ]; then
        # Its own process group, VMs included, to stop as one.
        setsid nice -n 10 scripts/kernel-matrix.sh > target/kernel-matrix.log 2>&1 < /dev/null &
    else
        sudo -v # asks for a password now, not in the background
        sudo -E env "PATH=$PATH" TFE_TESTS_FILE="$TFE_TESTS_FILE" nice -n 10 \
            scripts/kernel-matrix.sh > target/kernel-matrix.log 2>&1 < /dev/null &
    fi
    matrix_pid=$!
    trap '[ -z "$matrix_pid" ] || kill -- -"$matrix_pid" 2>/dev/null || kill "$matrix_pid" 2>/dev/null' EXIT
fi

# After the matrix has started: it is the longest part, and these need
# none of its binaries (2 minutes, 2026-12-03).
cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
scripts/check-deploy.sh

cargo test --locked -- --include-ignored
# The default run uses --probe=auto; every other `deep` backend of this
# kernel's row gets the traffic tests too (the same test binaries that
# scripts/kernel-matrix.sh runs per deep backend).
[ "$native_deep" = - ] && native_deep=""
for backend in ${native_deep//,/ }; do
    [ "$backend" = "${TFE_EXPECT_AUTO:-}" ] && continue
    echo "test.sh: traffic tests with --probe=$backend"
    TFE_PROBE=$backend cargo test --locked --test counting --test closing --test flow_keys \
        --test roles_and_filters --test http --test program_stats --test identity --test walk -- --include-ignored
done

if [ -n "$matrix_pid" ]; then
    echo "test.sh: waiting for the kernel matrix"
    status=0
    wait "$matrix_pid" || status=$?
    matrix_pid=""
    cat target/kernel-matrix.log
    exit "$status"
fi
