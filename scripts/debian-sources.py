#!/usr/bin/env python3
"""Prints a private APT sources list for the Debian suites the kernel matrix
fetches kernels from, built from this machine's own Debian mirrors so that no
mirror is named in the project. Exits 1 when the machine has no Debian source
and TFE_DEBIAN_MIRROR is not set."""
import glob
import os
import sys

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def blocks():
    """(uri, suites) of every deb source configured on this machine."""
    for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
        for block in open(path).read().split("\n\n"):
            fields = {}
            for line in block.splitlines():
                if ":" in line and not line.startswith("#"):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()
    for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
        if not os.path.exists(path):
            continue
        for line in open(path):
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]


def main():
    main_uri = os.environ.get("TFE_DEBIAN_MIRROR")
    security_uri = os.environ.get("TFE_DEBIAN_SECURITY_MIRROR")
    debian_suites = ("bullseye", "bookworm", "trixie", "sid")
    for uri, suites in blocks():
        if not any(s.split("-")[0] in debian_suites for s in suites):
            continue
        if any(s.endswith("-security") for s in suites):
            security_uri = security_uri or uri
        else:
            main_uri = main_uri or uri
    if not main_uri:
        sys.exit(1)
    opts = f"[signed-by={KEYRING}]" if os.path.exists(KEYRING) else ""
    for suite in ("bullseye", "bookworm", "bookworm-updates"):
        print(f"deb {opts} {main_uri} {suite} main")
    if security_uri:
        for suite in ("bullseye-security", "bookworm-security"):
            print(f"deb {opts} {security_uri} {suite} main")


main()
