#!/usr/bin/env bash
# Unpacks Debian's prometheus package (promtool, and the server for the
# end-to-end tests) into a per-user cache without installing it: installing
# would create a system user and start a Prometheus service on the machine.
# Prints the directory holding the binaries.
set -euo pipefail

cache="${TFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcp-flow-exporter}"
dest="$cache/prometheus"
if [ ! -x "$dest/usr/bin/promtool" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    mkdir -p "$cache/debs"
    if ! (cd "$cache/debs" && apt-get download prometheus >/dev/null 2>&1); then
        $sudo apt-get update -qq
        (cd "$cache/debs" && apt-get download prometheus >/dev/null)
    fi
    rm -rf "$dest"
    dpkg -x "$(ls -t "$cache"/debs/prometheus_*.deb | head -n1)" "$dest"
fi
echo "$dest/usr/bin"
