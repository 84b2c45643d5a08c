#!/bin/bash
# dracut module: boot a composefs root with composefs-setup-root.
#
# Needs /usr/bin/composefs-setup-root in the tree dracut runs in (the image
# build installs it from crates.io: cargo install composefs-setup-root@0.9.4).

check() {
    # Only when asked for (--add composefs or add_dracutmodules+=" composefs ").
    require_binaries composefs-setup-root || return 1
    return 255
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    # composefs = EROFS metadata image + overlayfs.
    instmods -c erofs overlay
    # The root file system and its disk, for --no-hostonly test images:
    # virtio (QEMU), NVMe/AHCI/SCSI disks and the file systems cbootc formats.
    instmods virtio_blk virtio_pci virtio_scsi nvme ahci sd_mod \
        ext4 xfs btrfs vfat
}

install() {
    inst_binary composefs-setup-root /usr/bin/composefs-setup-root
    inst_simple "$moddir/composefs-setup-root.service" \
        "$systemdsystemunitdir/composefs-setup-root.service"
    # Optional configuration ([etc]/[var]/[root] mount modes).
    if [[ -f "$dracutsysrootdir/usr/lib/composefs/setup-root-conf.toml" ]]; then
        inst_simple /usr/lib/composefs/setup-root-conf.toml
    fi
    $SYSTEMCTL -q --root "$initdir" add-wants \
        initrd-root-fs.target composefs-setup-root.service
}
