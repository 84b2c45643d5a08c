#!/bin/bash
# The project's test command (README "Run the tests"): installs what the
# tests need on a fresh Debian 12 machine, then runs formatting and lint
# checks, unit tests and the root integration tests, and then the boot tests
# (tests/e2e: install the Debian test image, boot the disks in QEMU).
#
# CBOOTC_E2E=0 skips the boot tests (they take 10-15 min, plus ~5 min for a
# cold image build). Their logs are in target/e2e-logs/.
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
# Free space, at the start and at the end (pass or fail): a run needs ~10 GB
# besides the apt packages (DESIGN.md "Boot tests", disk space), and a full
# disk shows up as failing installs and boots.
df -h . | sed 's/^/== disk: /'
trap 'df -h . | sed "s/^/== disk at exit: /"' EXIT

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# Integration tests create loop devices and filesystems; two at a time is
# plenty on a 2-core machine.
cargo test --locked -- --test-threads=2

if [ "${CBOOTC_E2E:-1}" = 0 ]; then
    echo "== boot tests skipped (CBOOTC_E2E=0)"
    exit 0
fi
echo "== boot tests (tests/e2e; logs and timings.txt in target/e2e-logs/)"
tests/e2e/setup-host.sh
# The cbootc under test (installed on the host and carried by the image) is a
# release build: the verity test runs it inside an emulated guest, where the
# debug build takes 5 min instead of 1. The harnesses stay debug builds
# (built above): `cargo test --release` would LTO-link the test binaries too
# and cost ~10 more minutes on 2 cores. Each test prints its timings.
cargo build --release --locked --bin cbootc
export CBOOTC_TEST_BIN=$PWD/target/release/cbootc
cargo test --locked --test e2e -- --ignored --test-threads=1 --nocapture
echo "== install checks with the real image's ukify, systemd-boot and sbsign (tests/install_uki.rs)"
CBOOTC_TEST_OCI="$PWD/target/e2e/oci" CBOOTC_TEST_OCI_TAG=e2e \
    cargo test --locked --test install_uki -- --ignored --test-threads=1
