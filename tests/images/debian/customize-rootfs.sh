#!/bin/bash
# Test-image-only changes on top of contrib/image/finish-rootfs.sh.
# Usage: customize-rootfs.sh ROOT   (ROOT = a Debian trixie rootfs directory)
set -euo pipefail
ROOT=${1:?usage: $0 ROOT}
HERE=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")

# Files from rootfs/: hostname, serial autologin drop-in, harness-friendly
# shell profile, DHCP via systemd-networkd. Copied one by one with fixed
# owner and modes (the checkout's umask and owner must not leak into /etc).
(cd "$HERE/rootfs" && find . -mindepth 1 \( -type f -o -type l \) -printf '%P\n') |
    while read -r f; do
        d=$ROOT/$(dirname -- "$f")
        [[ -d $d ]] || install -d -m 0755 "$d"
        if [[ -L $HERE/rootfs/$f ]]; then
            ln -sfn -- "$(readlink -- "$HERE/rootfs/$f")" "$ROOT/$f"
        elif [[ -x $HERE/rootfs/$f ]]; then
            install -m 0755 -- "$HERE/rootfs/$f" "$ROOT/$f"
        else
            install -m 0644 -- "$HERE/rootfs/$f" "$ROOT/$f"
        fi
    done

# Empty root password (login on other consoles, su, ...).
sed -i 's/^root:[^:]*:/root::/' "$ROOT/etc/shadow"

# Lean: no apt caches or package lists (tests never run apt in the guest),
# no logs or backup files from the build.
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/*
rm -f "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
find "$ROOT/var/log" -type f -delete
rm -f "$ROOT/etc/resolv.conf"
