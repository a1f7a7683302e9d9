#!/usr/bin/env bash
# Boots every kernel of tests/kernels.conf under qemu (TCG) with virtme-ng
# and runs the root integration tests inside against the binaries built
# here: the exact-totals agreement test under every backend that kernel must
# support, and the traffic tests under its `deep` backends. Fails loudly when a cell
# fails, and when a VM does not boot or leaves no result.
#
#   scripts/kernel-matrix.sh            every kernel in tests/kernels.conf
#   scripts/kernel-matrix.sh 5.10 6.1   just those
#   scripts/kernel-matrix.sh --list-tests   name=path of each test binary
#
# Kernel packages, apt lists and the virtme-ng venv are cached in
# ${TFE_CACHE:-~/.cache/tcp-flow-exporter} between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The test binaries that move traffic through the exporter: each VM runs
# each of them once per `deep` backend of its row (scripts/test.sh does the
# same natively).
# Every other test binary runs once per kernel, except those in `not_here`.
traffic_tests=(counting closing flow_keys roles_and_filters http program_stats walk)
once_tests=(errors map_read agreement identity privileges)
# Once-tests run in the first VM of a run only (the oldest kernel in a full
# one) and natively on the newest, when the kernel side they check is the
# same on every kernel or differs only at one boundary that these two
# straddle: identity (the socket's cgroup id, conntrack over netlink) and
# privileges (capabilities, links, bpffs; kernel.unprivileged_bpf_disabled
# gates bpf() before 6.5 only). 2 minutes each per kernel under TCG
# (2026-12-03).
first_vm_only=(identity privileges)
# Chromium, Prometheus, the cloud-ranges converter, the test Kubernetes
# API server, prices (arithmetic on counted bytes) and the web endpoint's
# TLS, auth and abuse tests do not depend on the kernel; scripts/test.sh
# runs these natively.
not_here=(browser prometheus cloud_ranges kube_api cost web_security load soak)

# name=path lines of the test binaries, built now if needed.
build_tests() {
    cargo test --no-run --locked --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"] + "=" + m["executable"])'
}

# scripts/test.sh lists the binaries before its own `cargo test` holds the
# build directory's lock, then runs the matrix beside it.
if [ "${1:-}" = --list-tests ]; then
    build_tests
    exit
fi

if [ "$(id -u)" -ne 0 ]; then
    # Build as you; boot as root, which linking the guest kernel's modules
    # under /lib/modules needs.
    mkdir -p target
    build_tests > target/kernel-matrix-tests.txt
    exec sudo -E env "PATH=$PATH" TFE_TESTS_FILE="$PWD/target/kernel-matrix-tests.txt" "$0" "$@"
fi

cache="${TFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcp-flow-exporter}"
results="$PWD/target/kernel-matrix"
# One kernel with four deep backends took 1318 s on the 2-vCPU CI machine
# (2026-12-01); with at most two deep backends per kernel, 1500 s leaves
# room for a slower day, and three kernels still fit CI's 90 minutes even if
# one VM hangs.
vm_timeout="${TFE_VM_TIMEOUT:-1500}"
mkdir -p "$cache"

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }

install_tools() {
    local missing=()
    for p in qemu-system-x86 kmod busybox-static python3-venv; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ ! -x "$cache/venv/bin/vng" ]; then
        log "installing virtme-ng into $cache/venv"
        python3 -m venv "$cache/venv"
        "$cache/venv/bin/pip" install -q virtme-ng
    fi
}

# A private APT setup over this machine's own Debian mirrors, so fetching
# bullseye kernels neither needs nor changes the machine's sources.
apt_opts=()
setup_apt() {
    local dir="$cache/apt"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    if ! scripts/debian-sources.py > "$dir/sources.list.new"; then
        log "this machine has no Debian APT source; set TFE_DEBIAN_MIRROR to a Debian mirror URI"
        exit 1
    fi
    mv "$dir/sources.list.new" "$dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Debug::NoLocking=1)
    # Kernel updates land a few times a month; refresh the lists daily.
    if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
        log "updating the package lists"
        apt-get "${apt_opts[@]}" update -qq || log "apt-get update failed; using the lists already cached"
    fi
}

# Prints the path of the unpacked kernel image for a package regex, fetching
# and unpacking the newest matching package unless it is cached.
fetch_kernel() {
    local pattern=$1 pkg deb dir
    pkg=$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "$pattern" | sort -V | tail -n1)
    if [ -z "$pkg" ]; then
        # Offline or a mirror without it: fall back to the newest cached one.
        pkg=$(ls "$cache/kernels" 2>/dev/null | grep -E "$pattern" | sort -V | tail -n1)
        [ -n "$pkg" ] || { log "no package matches $pattern"; return 1; }
    fi
    dir="$cache/kernels/$pkg"
    if [ ! -d "$dir/boot" ]; then
        mkdir -p "$cache/kernels/download"
        log "downloading $pkg"
        (cd "$cache/kernels/download" && apt-get "${apt_opts[@]}" download "$pkg" >/dev/null 2>&1) \
            || { log "cannot download $pkg"; return 1; }
        deb=$(ls "$cache/kernels/download/${pkg}"_*.deb | head -n1)
        rm -rf "$dir.partial"
        dpkg -x "$deb" "$dir.partial"
        mv "$dir.partial" "$dir"
        rm -f "$deb"
    fi
    local version
    version=$(ls "$dir/lib/modules")
    # virtme-ng loads the guest kernel's 9p and virtio modules from
    # /lib/modules/<version>; a link keeps them in the cache.
    mkdir -p /lib/modules
    [ -e "/lib/modules/$version" ] || ln -s "$dir/lib/modules/$version" "/lib/modules/$version"
    echo "$dir/boot/vmlinuz-$version"
}

# The once-tests of this VM: all of them in the first VM of the run, the
# rest in the others.
first_vm=1
vm_once_tests() {
    local t
    for t in "${once_tests[@]}"; do
        if [ "$first_vm" = 1 ] || [[ " ${first_vm_only[*]} " != *" $t "* ]]; then
            printf '%s ' "$t"
        fi
    done
}

# Writes the script the guest runs: every cell of one kernel, each cell's log
# and exit code into the shared results directory.
write_guest_script() {
    local dir=$1 backends=$2 auto=$3 unsupported=$4 deep=$5
    {
        echo '#!/bin/sh'
        echo "export CI=true PROMTOOL='$PROMTOOL' TFE_EXPECT_AUTO='$auto' TFE_UNSUPPORTED='$unsupported'"
        echo "cell() { name=\$1; shift; start=\$(date +%s); \"\$@\" > '$dir'/\$name.log 2>&1; echo \$? > '$dir'/\$name.rc; echo \$((\$(date +%s) - start)) > '$dir'/\$name.seconds; }"
        echo "uname -r > '$dir'/uname"
        # Root tests are #[ignore]d unless asked for: --include-ignored runs them.
        # Every once-test gets a cell: the check below expects each of them.
        for t in $(vm_once_tests); do
            case $t in
                errors) echo "cell errors ${tests[errors]} --include-ignored --test-threads=2" ;;
                map_read) echo "cell map_read ${tests[map_read]} --include-ignored" ;;
                # One run of identical traffic per backend this kernel must support.
                agreement) echo "cell agreement env TFE_BACKENDS='$backends' ${tests[agreement]} --include-ignored --test-threads=1" ;;
                # Names, prices, capabilities: each test starts its own exporter.
                *) echo "cell $t ${tests[$t]} --include-ignored --test-threads=1" ;;
            esac
        done
        # Traffic tests run one at a time because each test starts and stops
        # its own exporter. Replacing an fexit trampoline (any attach or detach
        # on the function) patches the old image to skip its fexit programs
        # for calls still inside the function (bpf_tramp_image_put, Linux 5.12,
        # backported to 5.10.28), so a recv() blocked across another test's
        # exporter start is never counted. Seen on 5.10 with two test threads.
        for b in ${deep//,/ }; do
            for t in "${traffic_tests[@]}"; do
                echo "cell $b-$t env TFE_PROBE=$b ${tests[$t]} --include-ignored --test-threads=1"
            done
        done
        echo "echo done > '$dir'/finished"
    } > "$dir/guest.sh"
    chmod +x "$dir/guest.sh"
}

# Checks one cell's result; prints a failure line and returns 1 if it failed.
check_cell() {
    local dir=$1 cell=$2
    if [ ! -f "$dir/$cell.rc" ]; then
        echo "$cell: no result (the VM died or timed out before it ran)"; return 1
    fi
    # A test left ignored did not run: root tests must run here.
    if [ "$(cat "$dir/$cell.rc")" != 0 ] || ! grep -q "^test result: ok" "$dir/$cell.log" \
        || grep -q "SKIPPED" "$dir/$cell.log" || grep -q "^test .* \.\.\. ignored" "$dir/$cell.log"; then
        echo "$cell: FAILED (exit $(cat "$dir/$cell.rc")), log follows"
        sed 's/^/    /' "$dir/$cell.log" | tail -n 60
        return 1
    fi
    echo "$cell: ok ($(grep -c '^test .* ok$' "$dir/$cell.log") tests, $(cat "$dir/$cell.seconds" 2>/dev/null || echo '?') s)"
}

main() {
    install_tools
    setup_apt
    PROMTOOL="$(scripts/fetch-prometheus.sh)/promtool"
    declare -gA tests
    local list
    if [ -n "${TFE_TESTS_FILE:-}" ]; then list=$(cat "$TFE_TESTS_FILE"); else list=$(build_tests); fi
    while IFS== read -r name path; do tests[$name]=$path; done <<< "$list"
    for t in "${traffic_tests[@]}" "${once_tests[@]}"; do
        [ -n "${tests[$t]:-}" ] || { log "test binary $t was not built"; exit 1; }
    done
    # A new test binary must be placed in one of the lists above.
    for t in "${!tests[@]}"; do
        [[ " ${traffic_tests[*]} ${once_tests[*]} ${not_here[*]} " == *" $t "* ]] \
            || { log "test binary $t is in no list at the top of $0"; exit 1; }
    done

    local wanted=("$@") failed=0 summary=()
    rm -rf "$results"; mkdir -p "$results"
    while read -r name pattern backends auto unsupported deep; do
        case "$name" in ''|'#'*) continue ;; esac
        [ "$pattern" = native ] && continue
        if [ "${#wanted[@]}" -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $name " ]]; then continue; fi
        [ "$unsupported" = - ] && unsupported=""
        [ "$deep" = - ] && deep=""
        local dir="$results/$name" image start
        mkdir -p "$dir"
        if ! image=$(fetch_kernel "$pattern"); then
            summary+=("$name: FAILED (no kernel package)"); failed=1; continue
        fi
        [[ ",$backends," == *",$auto,"* ]] || { log "$name: auto backend $auto is not in must-work"; exit 1; }
        for b in ${deep//,/ }; do
            [[ ",$backends," == *",$b,"* ]] || { log "$name: deep backend $b is not in must-work"; exit 1; }
        done
        write_guest_script "$dir" "$backends" "$auto" "$unsupported" "$deep"
        log "booting $name ($(basename "$image")) for $backends (traffic tests: $deep)"
        start=$SECONDS
        # vng starts its helpers (virtme-run, ...) through PATH.
        PATH="$cache/venv/bin:$PATH" timeout "$vm_timeout" vng -r "$image" --disable-kvm --memory 2G \
            --rwdir "$dir" --exec "$dir/guest.sh" > "$dir/console.log" 2>&1 || true
        log "$name finished in $((SECONDS - start)) s"
        local cells
        read -ra cells <<< "$(vm_once_tests)"
        first_vm=0
        for b in ${deep//,/ }; do
            for t in "${traffic_tests[@]}"; do cells+=("$b-$t"); done
        done
        if [ ! -f "$dir/finished" ]; then
            echo "$name: the VM did not finish; console:"; tail -n 40 "$dir/console.log" | sed 's/^/    /'
            failed=1
        fi
        for cell in "${cells[@]}"; do
            line=$(check_cell "$dir" "$cell") || failed=1
            echo "$name $line"
            summary+=("$name ${line%%$'\n'*}")
        done
    done < tests/kernels.conf

    echo
    echo "kernel matrix summary:"
    printf '  %s\n' "${summary[@]}"
    [ "$failed" = 0 ] || { log "FAILED"; exit 1; }
    log "all cells passed"
}

main "$@"
