#!/bin/bash
# Boot a test image in QEMU WITHOUT cbootc, to check the image and its
# initramfs (composefs-setup-root, the dracut module) on their own.
#
# Usage: tests/images/smoke-boot.sh --cfsctl PATH --image oci:DIR:TAG [--work DIR]
#
# cfsctl comes from crates.io: cargo install --locked composefs-ctl@0.9.4.
# Builds a GPT disk (ESP with systemd-boot, ext4 root with an insecure
# SHA-512 composefs repository filled by `cfsctl oci pull` + `prepare-boot`,
# state/deploy/<id>/var -> ../../os/default/var), boots it with QEMU (TCG,
# OVMF, serial on stdio), runs a few commands on the autologin console and
# powers off. Exit status 0 when the guest reached a shell and ran them.
set -euo pipefail
die() { echo "smoke-boot: ERROR: $*" >&2; exit 1; }
log() { echo "smoke-boot: $*" >&2; }

cfsctl= image= work=/var/tmp/cbootc-smoke
while [[ $# -gt 0 ]]; do
    case $1 in
    --cfsctl) cfsctl=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done
[[ -x $cfsctl && $image == oci:* ]] || die "usage: $0 --cfsctl PATH --image oci:DIR:TAG"
for t in qemu-system-x86_64 mkfs.ext4 mkfs.vfat mcopy sfdisk python3; do
    command -v $t >/dev/null || die "$t missing"
done
OVMF=/usr/share/ovmf/OVMF.fd
[[ -f $OVMF ]] || die "$OVMF missing (apt-get install ovmf)"

rm -rf "$work"
mkdir -p "$work/root/state/os/default/var" "$work/esp"
repo=$work/root/composefs
"$cfsctl" init --insecure "$repo" >&2
log "pulling $image"
"$cfsctl" --repo "$repo" oci pull "$image" smoke >&2

uuid=$(cat /proc/sys/kernel/random/uuid)
cmdline=(root=UUID=$uuid rw console=ttyS0 systemd.gpt_auto=0 oops=panic panic=-1)
args=()
for a in "${cmdline[@]}"; do args+=(--cmdline "$a"); done
"$cfsctl" --repo "$repo" oci prepare-boot smoke --bootdir "$work/esp" --entry-id smoke "${args[@]}" >&2
id=$(ls "$work/root/state/deploy")
log "image id $id"
# The shared /var, as cbootc does it: deploy var is a relative symlink.
rmdir "$work/root/state/deploy/$id/var"
ln -s ../../os/default/var "$work/root/state/deploy/$id/var"
mkdir -p "$work/esp/EFI/BOOT"
# systemd-boot from the image itself.
mkdir -p "$work/mnt"
"$cfsctl" --repo "$repo" oci mount smoke "$work/mnt" && {
    cp "$work/mnt/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$work/esp/EFI/BOOT/BOOTX64.EFI"
    umount "$work/mnt"
} || die "cannot mount the image to copy systemd-boot"
printf 'timeout 0\ndefault smoke.conf\n' >"$work/esp/loader/loader.conf"
cat "$work/esp/loader/entries/"*.conf >&2

log "making file systems"
mkfs.ext4 -q -F -b 4096 -O verity -U "$uuid" -L root -d "$work/root" "$work/root.img" 3G
mkfs.vfat -C -n ESP "$work/esp.img" $((300 * 1024)) >/dev/null
(cd "$work/esp" && mcopy -s -i "$work/esp.img" ./* ::/)
truncate -s $((1 + 300 + 3072 + 1))M "$work/disk.raw"
sfdisk -q "$work/disk.raw" <<EOF
label: gpt
start=1MiB, size=300MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
start=301MiB, size=3072MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc status=none
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=301 conv=notrunc status=none
rm -f "$work/esp.img" "$work/root.img"

log "booting (TCG: about 1-2 minutes)"
python3 - "$work/disk.raw" "$OVMF" <<'EOF'
import os, subprocess, sys, time
disk, ovmf = sys.argv[1:3]
cmd = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "qemu64",
       "-smp", "2", "-m", "2048", "-bios", ovmf,
       "-drive", f"if=virtio,format=raw,file={disk}", "-device", "virtio-rng-pci",
       "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio",
       "-no-reboot"]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
buf = b""
def wait_for(pat, timeout):
    global buf
    end = time.time() + timeout
    os.set_blocking(p.stdout.fileno(), False)
    while time.time() < end:
        chunk = p.stdout.read()
        if chunk:
            sys.stderr.buffer.write(chunk); sys.stderr.flush()
            buf += chunk
            if pat in buf:
                return True
        elif p.poll() is not None:
            return False
        time.sleep(0.2)
    return False
ok = wait_for(b"root@cbootc-test", 600)
if ok:
    buf = b""
    p.stdin.write(b"echo VERSION=$(cat /usr/lib/cbootc-test-version); "
                  b"for m in / /etc /var /sysroot; do findmnt -n -o TARGET,SOURCE,FSTYPE,OPTIONS $m; done; "
                  b"systemctl is-system-running --wait; systemctl --failed --no-legend; echo SMOKE-DONE\n")
    p.stdin.flush()
    ok = wait_for(b"\nSMOKE-DONE", 300)
    p.stdin.write(b"poweroff\n"); p.stdin.flush()
try:
    p.wait(120)
except subprocess.TimeoutExpired:
    p.kill()
sys.exit(0 if ok else 1)
EOF
