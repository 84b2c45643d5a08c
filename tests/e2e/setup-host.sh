#!/bin/bash
# Install what the boot tests (tests/e2e) and the demo need on a Debian 12
# (bookworm) or 13 (trixie) x86-64 host. Idempotent: installs only what is
# missing, so a second run costs a few dpkg queries.
#
# Usage: tests/e2e/setup-host.sh [--no-podman]
#
#   QEMU >= 8 (bookworm: from bookworm-backports; the stock 7.2 corrupts a
#   trixie guest under TCG, see DESIGN.md "Boot tests"), qemu-img, OVMF,
#   e2fsprogs (mkfs.ext4 -d for the guest's image disk), and unless
#   --no-podman: podman, runc, skopeo for the containers-storage install.
#   build-debian.sh installs its own (mmdebstrap, python3, ...).
set -euo pipefail
log() { echo "setup-host: $*" >&2; }
die() { echo "setup-host: ERROR: $*" >&2; exit 1; }

podman=1
for a in "$@"; do
    case $a in
    --no-podman) podman=0 ;;
    *) die "unknown argument $a" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get)"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 hosts are supported"
command -v apt-get >/dev/null || die "needs a Debian-like host with apt-get"

export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
updated=0
apt_update() {
    if [[ $updated -eq 0 ]]; then
        apt-get update -q >&2 || die "apt-get update failed"
        updated=1
    fi
}

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# --- QEMU ---------------------------------------------------------------------
qemu_major() {
    local v
    v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || return 0
    installed qemu-system-x86 || return 0
    v=${v#*:}
    echo "${v%%.*}"
}
if [[ $(qemu_major) -lt 8 ]] || ! installed qemu-utils; then
    qemu_opts=()
    if [[ $codename == bookworm ]]; then
        if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "adding the bookworm-backports apt source"
            cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            updated=0
        fi
        qemu_opts=(-t bookworm-backports)
    fi
    apt_update
    log "installing qemu-system-x86 qemu-utils ${qemu_opts[*]}"
    apt-get install -y -q --no-install-recommends "${qemu_opts[@]}" qemu-system-x86 qemu-utils >&2 ||
        die "cannot install QEMU"
    [[ $(qemu_major) -ge 8 ]] || die "QEMU $(qemu_major) installed; the tests need >= 8"
fi

# --- the rest -----------------------------------------------------------------
pkgs=(ovmf e2fsprogs python3 ca-certificates)
[[ $podman -eq 1 ]] && pkgs+=(podman runc skopeo)
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update
    log "installing ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
fi
# --- UKI / Secure Boot boots (tests/e2e/uki.rs) ----------------------------------
# virt-fw-vars enrolls cbootc's certificate into a VARS copy; mtools edits a
# disk's ESP. python3-virt-firmware: trixie main, bookworm-backports (falls
# back to pip's virt-firmware).
installed mtools || { apt_update; apt-get install -y -q --no-install-recommends mtools >&2 || die "cannot install mtools"; }
if ! command -v virt-fw-vars >/dev/null; then
    vfw_opts=()
    if [[ $codename == bookworm ]]; then
        if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "adding the bookworm-backports apt source"
            cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'EOF2'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF2
            updated=0
        fi
        vfw_opts=(-t bookworm-backports)
    fi
    apt_update
    log "installing python3-virt-firmware ${vfw_opts[*]}"
    apt-get install -y -q --no-install-recommends "${vfw_opts[@]}" python3-virt-firmware >&2 ||
        pip install --break-system-packages virt-firmware >&2 ||
        log "warning: cannot install virt-firmware (virt-fw-vars); only the UKI Secure Boot boots need it"
fi

# The host's mkfs, losetup and the installer's loop devices.
modprobe loop 2>/dev/null || :
log "ok: $(qemu-system-x86_64 --version | head -n1)"
