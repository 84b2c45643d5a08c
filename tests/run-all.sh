#!/bin/bash
# The project's test command (README "Run the tests"): installs what the
# tests need on a fresh Debian 12 machine, then runs formatting and lint
# checks, unit tests and the root integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "tests/run-all.sh: the integration tests use loop devices and mounts; run as root" >&2
    exit 1
fi

need_pkgs=(mtools grub-common grub-efi-amd64-bin e2fsprogs xfsprogs btrfs-progs
           dosfstools fdisk util-linux libssl-dev pkg-config zlib1g-dev
           cryptsetup-bin xorriso erofs-utils squashfs-tools file
           docker-registry skopeo openssl apache2-utils sbsigntool systemd-boot-efi)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The loop module is not always loaded on a fresh machine.
modprobe loop 2>/dev/null || true

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# Integration tests create loop devices and filesystems; two at a time is
# plenty on a 2-core machine.
cargo test --locked -- --test-threads=2
