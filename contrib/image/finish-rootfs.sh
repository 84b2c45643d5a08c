#!/bin/bash
# Turn a distribution root file system into a cbootc (composefs) boot image.
#
# Usage: finish-rootfs.sh ROOT
#
#   ROOT=/   inside a Containerfile RUN step (commands run directly), or
#   ROOT=DIR on a build host (commands run chrooted into DIR, in a private
#            mount namespace with /dev, /proc and /sys bound in).
#
# Distribution-neutral (Fedora, Ubuntu, Debian). Expects in ROOT: a kernel
# (/usr/lib/modules/KVER/ with /usr/lib/modules/KVER/vmlinuz or
# /boot/vmlinuz-KVER), systemd, dracut, and /usr/bin/composefs-setup-root
# (or set COMPOSEFS_SETUP_ROOT=/path/to/binary to have it copied in).
#
# Steps:
#   1. install the dracut module 37composefs (from ../dracut next to this file)
#   2. per kernel: vmlinuz -> /usr/lib/modules/KVER/vmlinuz, and a generic
#      (--no-hostonly) initramfs with composefs -> .../KVER/initramfs.img
#   3. stage signed EFI binaries in /usr/share/efi/EFI/<vendor>/, empty
#      /boot, create /sysroot
#   4. bootc-style top-level symlinks into /var (home, root, opt, srv, mnt,
#      usr/local) and /run (media), with tmpfiles.d entries recreating the
#      targets in a fresh /var
#   5. empty /etc/machine-id, disable package-manager timers that fight an
#      image-based system, default target multi-user
set -euo pipefail

log() { echo "finish-rootfs: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 ROOT"
ROOT=$(realpath -e -- "$1") || die "no such directory: $1"
R=${ROOT%/}   # path prefix: empty for /
[[ -d $R/usr ]] || die "$ROOT does not look like a root file system (no /usr)"
[[ $(id -u) -eq 0 ]] || die "must run as root"
HERE=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")
DRACUT_MODULE_SRC=$HERE/../dracut/37composefs

# Run a command inside ROOT.
in_root() {
    if [[ $ROOT == / ]]; then
        "$@"
    else
        unshare --mount --propagation private -- /bin/sh -ec '
            root=$1; shift
            for d in dev proc sys; do
                mkdir -p "$root/$d"
                mount --rbind "/$d" "$root/$d"
            done
            exec chroot "$root" "$@"' sh "$ROOT" "$@"
    fi
}

# 1. dracut module + composefs-setup-root --------------------------------
[[ -f $DRACUT_MODULE_SRC/module-setup.sh ]] ||
    die "dracut module not found at $DRACUT_MODULE_SRC"
dracut_moddir=$R/usr/lib/dracut/modules.d/37composefs
mkdir -p "$dracut_moddir"
install -m 0755 "$DRACUT_MODULE_SRC/module-setup.sh" "$dracut_moddir/"
install -m 0644 "$DRACUT_MODULE_SRC/composefs-setup-root.service" "$dracut_moddir/"

if [[ -n ${COMPOSEFS_SETUP_ROOT:-} ]]; then
    install -D -m 0755 "$COMPOSEFS_SETUP_ROOT" "$R/usr/bin/composefs-setup-root"
fi
[[ -x $R/usr/bin/composefs-setup-root ]] ||
    die "$R/usr/bin/composefs-setup-root missing (cargo install composefs-setup-root@0.9.4, or set COMPOSEFS_SETUP_ROOT)"

# 2. kernels and initramfs ---------------------------------------------------
nkernels=0
for moddir in "$R"/usr/lib/modules/*/; do
    moddir=${moddir%/}
    kver=${moddir##*/}
    [[ -d $moddir/kernel || -f $moddir/modules.dep ]] || continue
    if [[ ! -f $moddir/vmlinuz ]]; then
        if [[ -f $R/boot/vmlinuz-$kver ]]; then
            # Debian/Ubuntu install the kernel to /boot only.
            install -m 0644 "$R/boot/vmlinuz-$kver" "$moddir/vmlinuz"
        else
            log "skipping $kver: no vmlinuz in /usr/lib/modules/$kver or /boot"
            continue
        fi
    fi
    log "building initramfs for $kver"
    in_root dracut --force --no-hostonly --no-hostonly-cmdline --reproducible \
        --kver "$kver" --add composefs \
        "/usr/lib/modules/$kver/initramfs.img"
    chmod 0644 "$moddir/initramfs.img"
    nkernels=$((nkernels + 1))
done
[[ $nkernels -gt 0 ]] || die "no kernel found in $R/usr/lib/modules"

# 3. /boot is owned by the installed system, /sysroot is the mount point ----
# Stage the distribution's signed EFI binaries (shim, grub, MokManager,
# fallback) at a fixed place, /usr/share/efi/EFI/<vendor>/, before /boot is
# emptied; cbootc copies them to the ESP at install time. Fedora's shim-x64
# and grub2-efi-x64 install into /boot/efi/EFI/{fedora,BOOT}; Debian and
# Ubuntu ship them under /usr/lib/shim and /usr/lib/grub/x86_64-efi-signed.
# systemd-boot needs no staging: /usr/lib/systemd/boot/efi/systemd-bootx64.efi.
vendor=$(sed -n 's/^ID=//p' "$R/usr/lib/os-release" 2>/dev/null | tr -d '"' || :)
efi_stage=$R/usr/share/efi/EFI
if [[ -d $R/boot/efi/EFI ]] && [[ -n $(ls -A "$R/boot/efi/EFI") ]]; then
    mkdir -p "$efi_stage"
    cp -a "$R/boot/efi/EFI/." "$efi_stage/"
fi
stage_efi() { # SRC... DEST: first existing SRC -> $efi_stage/$vendor/DEST
    local dest=${!#} src
    for src in "${@:1:$#-1}"; do
        if [[ -f $R$src ]]; then
            install -D -m 0644 "$R$src" "$efi_stage/$vendor/$dest"
            return 0
        fi
    done
}
if [[ -n $vendor ]]; then
    stage_efi /usr/lib/shim/shimx64.efi.signed shimx64.efi
    stage_efi /usr/lib/shim/mmx64.efi.signed /usr/lib/shim/mmx64.efi mmx64.efi
    stage_efi /usr/lib/shim/fbx64.efi.signed /usr/lib/shim/fbx64.efi fbx64.efi
    stage_efi /usr/lib/shim/BOOTX64.CSV BOOTX64.CSV
    stage_efi /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed grubx64.efi
fi

mkdir -p "$R/boot" "$R/sysroot"
find "$R/boot" -mindepth 1 -delete
# Debian's /vmlinuz, /initrd.img(.old) symlinks into /boot now dangle.
for l in "$R"/vmlinuz "$R"/vmlinuz.old "$R"/initrd.img "$R"/initrd.img.old; do
    if [[ -L $l && $(readlink -- "$l") == boot/* ]]; then rm -f -- "$l"; fi
done

# 4. State lives in /var: bootc-style symlinks ------------------------------
# link NAME TARGET [MODE]: replace directory ROOT/NAME by a relative symlink
# to TARGET, moving its contents into ROOT/TARGET when that is under var/.
link_dir() {
    local name=$1 target=$2 mode=${3:-0755}
    local path=$R/$name dest
    dest=$(realpath -m -- "$R/$(dirname -- "$name")/$target")
    if [[ -L $path ]]; then
        return 0
    fi
    if [[ $dest == "$R"/var/* ]]; then
        mkdir -p -m "$mode" "$dest"
        chmod "$mode" "$dest"
    fi
    if [[ -d $path ]]; then
        if [[ $dest == "$R"/var/* ]]; then
            find "$path" -mindepth 1 -maxdepth 1 -exec mv -t "$dest" -- {} +
        fi
        rm -rf -- "$path"
    fi
    ln -s "$target" "$path"
}
link_dir home var/home
link_dir root var/roothome 0700
link_dir opt var/opt
link_dir srv var/srv
link_dir mnt var/mnt
link_dir media run/media
link_dir usr/local ../var/usrlocal

mkdir -p "$R/usr/lib/tmpfiles.d"
cat > "$R/usr/lib/tmpfiles.d/cbootc-image.conf" <<'EOF'
# Targets of the image's top-level symlinks (cbootc finish-rootfs.sh).
d /var/home 0755 root root -
d /var/roothome 0700 root root -
d /var/opt 0755 root root -
d /var/srv 0755 root root -
d /var/mnt 0755 root root -
d /var/usrlocal 0755 root root -
d /run/media 0755 root root -
EOF

# 5. Identity, timers, target ----------------------------------------------
# Empty machine-id: generated on first boot (ConditionFirstBoot), committed
# to the /etc overlay.
: > "$R/etc/machine-id"
chmod 0444 "$R/etc/machine-id"
if [[ -f $R/var/lib/dbus/machine-id && ! -L $R/var/lib/dbus/machine-id ]]; then
    rm -f "$R/var/lib/dbus/machine-id"
fi

# Package-manager automation does not belong on an image-based system.
for unit in apt-daily.timer apt-daily-upgrade.timer dnf-makecache.timer \
    unattended-upgrades.service packagekit.service; do
    if [[ -e $R/usr/lib/systemd/system/$unit || -e $R/lib/systemd/system/$unit ]]; then
        in_root systemctl --quiet disable "$unit" 2>/dev/null || :
        in_root systemctl --quiet mask "$unit"
    fi
done

in_root systemctl --quiet set-default multi-user.target

log "done ($nkernels kernel(s))"
