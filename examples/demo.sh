#!/bin/bash
# cbootc in one command: build (or reuse) the Debian trixie test image,
# install it with cbootc into a disk image file, boot that disk headless in
# QEMU, and show from inside the guest what it booted: `cbootc status` (or,
# while that command does not exist, the root mount and the kernel command
# line) and the composefs root mount.
#
# Usage: sudo examples/demo.sh [WORKDIR]      (default: target/demo)
#
# For a Debian 12 (or 13) x86-64 machine with Rust >= 1.85 (rustup). Installs
# its apt dependencies (QEMU from bookworm-backports, OVMF, mmdebstrap, build
# headers). First run ~10 min on 2 cores (cbootc release build, image build:
# mmdebstrap + dracut + composefs-setup-root from crates.io, cached in
# /var/cache/cbootc-test); then about 2-3 min, most of it the boot under TCG.
set -euo pipefail
log() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "demo: ERROR: $*" >&2; exit 1; }

REPO=$(realpath -e -- "$(dirname -- "${BASH_SOURCE[0]}")/..")
cd "$REPO"
WORK=$(realpath -m -- "${1:-target/demo}")
[[ $(id -u) -eq 0 ]] || die "run as root (loop devices, mounts, apt-get): sudo $0"

log "host packages"
tests/e2e/setup-host.sh --no-podman
build_pkgs=(pkg-config libssl-dev zlib1g-dev gcc)
missing=()
for p in "${build_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
CARGO=${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}
[[ -x $CARGO ]] || die "cargo not found: install Rust >= 1.85 (https://rustup.rs), or set CARGO"

log "building cbootc (release)"
"$CARGO" build --release --locked --bin cbootc --example vm-run
CBOOTC=$REPO/target/release/cbootc

log "building the Debian test image (cached after the first run)"
mkdir -p "$WORK"
IMGREF=$(tests/images/build-debian.sh --cbootc "$CBOOTC" --out "$WORK/oci" --variant v1 --tag demo | tail -n 1)

log "cbootc install to-disk --source $IMGREF $WORK/disk.raw"
rm -f "$WORK/disk.raw"
"$CBOOTC" install to-disk --source "$IMGREF" "$WORK/disk.raw" --size 4G \
    --karg console=ttyS0 --karg systemd.gpt_auto=0

log "booting $WORK/disk.raw in QEMU (headless; about 1-2 min without KVM)"
"$REPO/target/release/examples/vm-run" "$WORK/disk.raw" --logs "$WORK" -- \
    'cbootc status 2>/dev/null || { echo "(no cbootc status yet; the root mount and kernel command line instead)"; findmnt /; cat /proc/cmdline; }' \
    'findmnt -n -o SOURCE,FSTYPE,OPTIONS /' \
    'findmnt --list -o TARGET,SOURCE,FSTYPE -t overlay,ext4,xfs,btrfs,vfat'
log "done: the disk is $WORK/disk.raw (unchanged: the VM wrote to an overlay); console log in $WORK"
