//! Tests of the target probes against real tools: every signature is made by
//! the tool that normally writes it and cross-checked with libblkid
//! (`blkid -p`), every wipe with `wipefs --no-act`, and every in-use check
//! with a real mount, loop device, swap area or device-mapper holder.

use super::*;
use crate::disk::loopdev::LoopDevice;
use crate::disk::mount::Mount;
use crate::disk::testutil::{ScratchDisk, blkid, scratch_image, sh};
use crate::util::command::exists;

/// Runs a shell command when dropped (test cleanup that must happen even if
/// an assertion fails).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = crate::util::command::run("sh", &["-c", &self.0]);
    }
}

// ---- pure detection ----

#[test]
fn zeros_and_short_files_are_blank() {
    assert!(detect(&[0u8; HEAD_LEN], &[0u8; TAIL_LEN]).is_empty());
    assert!(detect(&[0u8; 100], &[0u8; 100]).is_empty());
    assert!(detect(&[], &[]).is_empty());
}

#[test]
fn protective_mbr_alone_means_gpt() {
    let mut head = vec![0u8; 1024];
    head[510] = 0x55;
    head[511] = 0xAA;
    head[446 + 4] = 0xEE;
    head[446 + 8] = 1; // start LBA 1
    assert_eq!(detect(&head, &[]), vec!["gpt"]);
    // A hybrid MBR (0xEE plus a real entry) is both.
    head[446 + 16 + 4] = 0x0C;
    head[446 + 16 + 8] = 0x80;
    assert_eq!(detect(&head, &[]), vec!["gpt", "dos"]);
    // An invalid boot indicator: not a partition table (boot code).
    head[446 + 16] = 0x12;
    assert!(detect(&head, &[]).is_empty());
}

// ---- signatures from real tools ----

/// A scratch image of `size` bytes, set up by `script` (with `$IMG` set to
/// its path); checks `find_signatures` and blkid agree, then that `wipe`
/// leaves nothing for either.
fn check_signature(size: u64, script: &str, expected: &[&str], blkid_says: (&str, &str)) {
    let img = scratch_image(size);
    let path = img.path();
    sh(&format!("IMG='{}'; {script}", path.display()));
    assert_eq!(find_signatures(path).unwrap(), expected, "after: {script}");
    let probe = blkid(path);
    assert_eq!(
        probe.get(blkid_says.0).map(String::as_str),
        Some(blkid_says.1),
        "blkid disagrees after {script}: {probe:?}"
    );
    wipe(path, size).unwrap();
    assert!(find_signatures(path).unwrap().is_empty());
    let left = sh(&format!("wipefs --no-act '{}'", path.display()));
    assert!(left.trim().is_empty(), "wipefs still finds: {left}");
    // The file keeps its size.
    assert_eq!(std::fs::metadata(path).unwrap().len(), size);
}

const MIB: u64 = 1 << 20;

#[test]
fn gpt_by_sfdisk() {
    check_signature(
        64 * MIB,
        "echo 'label: gpt\n,10M\n,' | sfdisk -q \"$IMG\"",
        &["gpt"],
        ("PTTYPE", "gpt"),
    );
}

#[test]
fn dos_by_sfdisk() {
    check_signature(
        64 * MIB,
        "echo 'label: dos\n,10M\n,' | sfdisk -q \"$IMG\"",
        &["dos"],
        ("PTTYPE", "dos"),
    );
}

#[test]
fn gpt_backup_header_alone() {
    // Primary GPT and protective MBR destroyed, backup at the end intact.
    let img = scratch_image(64 * MIB);
    sh(&format!(
        "echo 'label: gpt\n,10M' | sfdisk -q '{0}' && dd if=/dev/zero of='{0}' bs=512 count=34 conv=notrunc status=none",
        img.path().display()
    ));
    assert_eq!(find_signatures(img.path()).unwrap(), vec!["gpt"]);
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let img = scratch_image(64 * MIB);
    {
        let lo = LoopDevice::attach_with_block_size(img.path(), 0, 0, false, 4096).unwrap();
        sh(&format!(
            "echo 'label: gpt\n,10M' | sfdisk -q '{}'",
            lo.path().display()
        ));
        lo.detach().unwrap();
    }
    // Primary header at byte 4096 (LBA 1), backup in the last 4096 bytes.
    let head = read_at_most(img.as_file(), 0, 8192).unwrap();
    assert_eq!(&head[4096..4104], b"EFI PART");
    assert_ne!(&head[512..520], b"EFI PART");
    assert_eq!(find_signatures(img.path()).unwrap(), vec!["gpt"]);
}

#[test]
fn ext4() {
    check_signature(
        64 * MIB,
        "mkfs.ext4 -q -F \"$IMG\"",
        &["ext4"],
        ("TYPE", "ext4"),
    );
}

#[test]
fn ext3() {
    check_signature(
        64 * MIB,
        "mkfs.ext3 -q -F \"$IMG\"",
        &["ext2/3"],
        ("TYPE", "ext3"),
    );
}

#[test]
fn ext2() {
    check_signature(
        64 * MIB,
        "mkfs.ext2 -q -F \"$IMG\"",
        &["ext2/3"],
        ("TYPE", "ext2"),
    );
}

#[test]
fn xfs() {
    check_signature(
        320 * MIB,
        "mkfs.xfs -q -f \"$IMG\"",
        &["xfs"],
        ("TYPE", "xfs"),
    );
}

#[test]
fn btrfs() {
    check_signature(
        256 * MIB,
        "mkfs.btrfs -q -f \"$IMG\"",
        &["btrfs"],
        ("TYPE", "btrfs"),
    );
}

#[test]
fn vfat_fat32_fat16_fat12() {
    // A FAT boot sector ends in 0x55AA like an MBR: it must not count as a
    // DOS partition table.
    check_signature(
        256 * MIB,
        "mkfs.fat -F 32 \"$IMG\" >/dev/null",
        &["vfat"],
        ("TYPE", "vfat"),
    );
    check_signature(
        64 * MIB,
        "mkfs.fat -F 16 \"$IMG\" >/dev/null",
        &["vfat"],
        ("TYPE", "vfat"),
    );
    check_signature(
        4 * MIB,
        "mkfs.fat -F 12 \"$IMG\" >/dev/null",
        &["vfat"],
        ("TYPE", "vfat"),
    );
}

#[test]
fn vfat_from_cbootc_fat_writer() {
    let img = scratch_image(64 * MIB);
    let tree = tempfile::tempdir().unwrap();
    crate::disk::fat::format_and_populate(img.path(), "ESP", 0x1234_5678, tree.path()).unwrap();
    assert_eq!(find_signatures(img.path()).unwrap(), vec!["vfat"]);
}

#[test]
fn swap() {
    check_signature(
        64 * MIB,
        "mkswap \"$IMG\" >/dev/null",
        &["swap"],
        ("TYPE", "swap"),
    );
}

/// Tools from packages that are not always installed (cryptsetup-bin,
/// xorriso, erofs-utils, squashfs-tools): these tests say when they cannot
/// run rather than fail, and run wherever the tool exists.
fn have(tool: &str) -> bool {
    let ok = exists(tool);
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

#[test]
fn luks() {
    if !have("cryptsetup") {
        return;
    }
    check_signature(
        32 * MIB,
        "printf secret > \"$IMG.key\" && cryptsetup luksFormat -q --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \"$IMG\" \"$IMG.key\"; rc=$?; rm -f \"$IMG.key\"; exit $rc",
        &["LUKS"],
        ("TYPE", "crypto_LUKS"),
    );
}

#[test]
fn iso9660() {
    if !have("xorriso") {
        return;
    }
    check_signature(
        8 * MIB,
        "d=$(mktemp -d) && echo hi > $d/f && xorriso -as mkisofs -quiet -o \"$IMG\" $d 2>/dev/null; rc=$?; rm -rf $d; truncate -s 8M \"$IMG\"; exit $rc",
        &["iso9660"],
        ("TYPE", "iso9660"),
    );
}

#[test]
fn erofs() {
    if !have("mkfs.erofs") {
        return;
    }
    check_signature(
        8 * MIB,
        "d=$(mktemp -d) && echo hi > $d/f && mkfs.erofs \"$IMG\" $d >/dev/null; rc=$?; rm -rf $d; truncate -s 8M \"$IMG\"; exit $rc",
        &["erofs"],
        ("TYPE", "erofs"),
    );
}

#[test]
fn squashfs() {
    if !have("mksquashfs") {
        return;
    }
    check_signature(
        8 * MIB,
        "d=$(mktemp -d) && echo hi > $d/f && rm -f \"$IMG\" && mksquashfs $d \"$IMG\" -quiet -noappend >/dev/null; rc=$?; rm -rf $d; truncate -s 8M \"$IMG\"; exit $rc",
        &["squashfs"],
        ("TYPE", "squashfs"),
    );
}

#[test]
fn gpt_over_an_old_whole_disk_filesystem() {
    // A GPT written over a whole-disk btrfs leaves the btrfs superblock at
    // 64 KiB: both are reported. (An ext4 superblock, at 1024, is inside
    // the GPT partition array and gets overwritten.)
    let img = scratch_image(256 * MIB);
    sh(&format!(
        "mkfs.btrfs -q -f '{0}' && echo 'label: gpt\n,10M' | sfdisk -q --wipe never '{0}'",
        img.path().display()
    ));
    assert_eq!(find_signatures(img.path()).unwrap(), vec!["gpt", "btrfs"]);
    let img = scratch_image(64 * MIB);
    sh(&format!(
        "mkfs.ext4 -q -F '{0}' && echo 'label: gpt\n,10M' | sfdisk -q --wipe never '{0}'",
        img.path().display()
    ));
    assert_eq!(find_signatures(img.path()).unwrap(), vec!["gpt"]);
}

#[test]
fn wipe_refuses_a_size_beyond_the_file_and_handles_tiny_files() {
    let img = scratch_image(4096);
    let msg = format!("{:#}", wipe(img.path(), 8192).unwrap_err());
    assert!(msg.contains("it is only 4096 bytes"), "{msg}");
    std::fs::write(img.path(), [0xFFu8; 4096]).unwrap();
    wipe(img.path(), 4096).unwrap();
    assert_eq!(std::fs::read(img.path()).unwrap(), vec![0u8; 4096]);
    // 3 MiB: head and tail MiB are zeroed, the middle is kept.
    let img = scratch_image(3 * MIB);
    std::fs::write(img.path(), vec![0xAAu8; 3 * MIB as usize]).unwrap();
    wipe(img.path(), 3 * MIB).unwrap();
    let data = std::fs::read(img.path()).unwrap();
    assert!(data[..MIB as usize].iter().all(|&b| b == 0));
    assert!(
        data[MIB as usize..2 * MIB as usize]
            .iter()
            .all(|&b| b == 0xAA)
    );
    assert!(data[2 * MIB as usize..].iter().all(|&b| b == 0));
}

// ---- inspect ----

#[test]
fn inspect_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("disk.img");
    assert_eq!(
        inspect(&missing).unwrap(),
        Target {
            kind: TargetKind::Missing,
            size: 0
        }
    );
    let img = scratch_image(5 * MIB);
    assert_eq!(
        inspect(img.path()).unwrap(),
        Target {
            kind: TargetKind::File,
            size: 5 * MIB
        }
    );
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(img.path(), &link).unwrap();
    assert_eq!(inspect(&link).unwrap().kind, TargetKind::File);

    let disk = ScratchDisk::new(7 * MIB);
    assert_eq!(
        inspect(disk.dev()).unwrap(),
        Target {
            kind: TargetKind::BlockDevice,
            size: 7 * MIB
        }
    );

    let msg = inspect(Path::new("/dev/cbootc-no-such-disk"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("/dev/cbootc-no-such-disk does not exist: no such disk"),
        "{msg}"
    );
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let msg = inspect(&dangling).unwrap_err().to_string();
    assert!(
        msg.contains("is a symlink to a path that does not exist"),
        "{msg}"
    );

    for bad in [dir.path(), Path::new("/dev/null")] {
        let msg = inspect(bad).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("{} is not a block device or disk image file", bad.display())
        );
    }
}

// ---- in use ----

#[test]
fn file_backing_a_loop_device_is_in_use() {
    let img = scratch_image(4 * MIB);
    let target = inspect(img.path()).unwrap();
    ensure_not_in_use(img.path(), &target).unwrap();
    let lo = LoopDevice::attach(img.path(), MIB, MIB, true).unwrap();
    let msg = ensure_not_in_use(img.path(), &target)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!(
            "backing file of loop device {}",
            lo.path().display()
        )),
        "{msg}"
    );
    // Also when reached through another path (a symlink).
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(img.path(), &link).unwrap();
    assert!(ensure_not_in_use(&link, &target).is_err());
    lo.detach().unwrap();
    ensure_not_in_use(img.path(), &target).unwrap();
}

#[test]
fn missing_target_is_not_in_use() {
    ensure_not_in_use(
        Path::new("/nonexistent/cbootc.img"),
        &Target {
            kind: TargetKind::Missing,
            size: 0,
        },
    )
    .unwrap();
}

fn assert_in_use(dev: &Path, needle: &str) {
    let target = inspect(dev).unwrap();
    let msg = ensure_not_in_use(dev, &target).unwrap_err().to_string();
    assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    assert!(
        msg.starts_with(&format!("{} is in use", dev.display())),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

fn assert_free(dev: &Path) {
    let target = inspect(dev).unwrap();
    ensure_not_in_use(dev, &target).unwrap();
}

#[test]
fn mounted_block_device_is_in_use() {
    let disk = ScratchDisk::new(64 * MIB);
    assert_free(disk.dev());
    sh(&format!("mkfs.ext4 -q -F {}", disk.dev().display()));
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(
        disk.dev(),
        dir.path(),
        "ext4",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    assert_in_use(
        disk.dev(),
        &format!("is mounted on {}", dir.path().display()),
    );
    m.unmount().unwrap();
    assert_free(disk.dev());
}

#[test]
fn mounted_btrfs_is_found_by_source() {
    // btrfs mounts report an anonymous st_dev (0:NN), not the device's.
    let disk = ScratchDisk::new(256 * MIB);
    sh(&format!("mkfs.btrfs -q -f {}", disk.dev().display()));
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(
        disk.dev(),
        dir.path(),
        "btrfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let mi = crate::disk::mountinfo::mounts_at(dir.path()).unwrap();
    assert_eq!(
        mi[0].major, 0,
        "expected an anonymous device for btrfs: {mi:?}"
    );
    assert_in_use(
        disk.dev(),
        &format!("is mounted on {}", dir.path().display()),
    );
    m.unmount().unwrap();
    assert_free(disk.dev());
}

/// A loop device with partition scanning (`losetup -P`), so that the kernel
/// creates partition devices; detached on drop.
struct PartitionedLoop {
    dev: PathBuf,
    _cleanup: Cleanup,
}

fn partitioned_loop(img: &Path) -> PartitionedLoop {
    // `partx -a` adds the partitions with the BLKPG ioctl after libblkid
    // parsed the table, so this works even on kernels built without
    // partition table parsers (like the CI VM's).
    let dev = sh(&format!(
        "dev=$(losetup --show -f -P '{}') && {{ partx -a $dev || {{ losetup -d $dev; exit 1; }}; }} && echo $dev",
        img.display()
    ));
    let dev = PathBuf::from(dev.trim());
    PartitionedLoop {
        _cleanup: Cleanup(format!("losetup -d {}", dev.display())),
        dev,
    }
}

#[test]
fn mounted_partition_makes_disk_in_use() {
    let img = scratch_image(64 * MIB);
    sh(&format!(
        "echo 'label: gpt\n,10M\n,' | sfdisk -q '{}'",
        img.path().display()
    ));
    let lo = partitioned_loop(img.path());
    let part = PathBuf::from(format!("{}p2", lo.dev.display()));
    // devtmpfs makes the partition nodes, possibly a moment later.
    sh(&format!(
        "for i in $(seq 50); do [ -b {0} ] && exit 0; sleep 0.1; done; exit 1",
        part.display()
    ));
    sh(&format!("mkfs.ext4 -q -F {}", part.display()));
    assert_free(&lo.dev);
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(
        &part,
        dir.path(),
        "ext4",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    assert_in_use(
        &lo.dev,
        &format!("{} is mounted on {}", part.display(), dir.path().display()),
    );
    m.unmount().unwrap();
    assert_free(&lo.dev);
}

#[test]
fn holders_are_reported_with_their_dm_name() {
    // A fake sysfs (this CI kernel has no device-mapper or MD): sda2 is
    // held by dm-3, named "vg-root".
    let sys = tempfile::tempdir().unwrap();
    let sda = sys.path().join("sda");
    std::fs::create_dir_all(sda.join("holders")).unwrap();
    std::fs::create_dir_all(sda.join("sda2/holders")).unwrap();
    std::fs::create_dir_all(sys.path().join("class/dm-3/dm")).unwrap();
    std::fs::write(sys.path().join("class/dm-3/dm/name"), "vg-root\n").unwrap();
    std::os::unix::fs::symlink("../../dm-3", sda.join("sda2/holders/dm-3")).unwrap();
    let family = vec![
        BlockNode {
            name: "sda".into(),
            rdev: 0,
            sysfs: sda.clone(),
        },
        BlockNode {
            name: "sda2".into(),
            rdev: 0,
            sysfs: sda.join("sda2"),
        },
    ];
    let msg = check_holders(
        Path::new("/dev/disk/by-id/x"),
        &family,
        &sys.path().join("class"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        msg,
        "/dev/disk/by-id/x is in use: /dev/sda2 is held by dm-3 (vg-root) (device-mapper, LVM, RAID or similar); deactivate it first"
    );
    std::fs::remove_file(sda.join("sda2/holders/dm-3")).unwrap();
    check_holders(Path::new("/dev/sda"), &family, &sys.path().join("class")).unwrap();
}

#[test]
fn file_mounted_without_a_loop_device_is_in_use() {
    // EROFS mounts image files directly (Linux >= 6.12 with
    // CONFIG_EROFS_FS_BACKED_BY_FILE): no loop device to find.
    if !have("mkfs.erofs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.erofs");
    sh(&format!(
        "d=$(mktemp -d) && echo hi > $d/f && mkfs.erofs '{}' $d >/dev/null; rc=$?; rm -rf $d; exit $rc",
        img.display()
    ));
    let mnt = tempfile::tempdir().unwrap();
    let m = match Mount::new(
        &img,
        mnt.path(),
        "erofs",
        rustix::mount::MountFlags::RDONLY,
        None,
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: this kernel cannot mount EROFS files directly: {e:#}");
            return;
        }
    };
    assert!(
        loopdev::bindings()
            .unwrap()
            .iter()
            .all(|b| b.backing_ino != std::fs::metadata(&img).unwrap().ino())
    );
    let target = inspect(&img).unwrap();
    let msg = ensure_not_in_use(&img, &target).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("is mounted on {}", mnt.path().display())),
        "{msg}"
    );
    m.unmount().unwrap();
    ensure_not_in_use(&img, &target).unwrap();
}

#[test]
fn device_mapper_holder_makes_disk_in_use() {
    if !have("dmsetup") {
        return;
    }
    let disk = ScratchDisk::new(8 * MIB);
    let name = format!("cbootc-test-{}", std::process::id());
    let created = crate::util::command::run(
        "sh",
        &[
            "-c",
            &format!(
                "echo '0 8192 linear {} 0' | dmsetup create {name}",
                disk.dev().display()
            ),
        ],
    );
    if let Err(e) = created {
        // No device-mapper in this kernel: say so instead of failing.
        eprintln!("SKIPPED: dmsetup create failed: {e:#}");
        return;
    }
    let _cleanup = Cleanup(format!("dmsetup remove {name}"));
    assert_in_use(disk.dev(), &format!("({name})"));
    drop(_cleanup);
    assert_free(disk.dev());
}

#[test]
fn active_swap_device_is_in_use() {
    let disk = ScratchDisk::new(16 * MIB);
    sh(&format!(
        "mkswap {} >/dev/null && swapon {}",
        disk.dev().display(),
        disk.dev().display()
    ));
    let cleanup = Cleanup(format!("swapoff {}", disk.dev().display()));
    assert_in_use(disk.dev(), "is active swap");
    drop(cleanup);
    assert_free(disk.dev());
}

#[test]
fn active_swap_file_is_in_use() {
    // swapon refuses files with holes: write it out.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swapfile");
    sh(&format!(
        "dd if=/dev/zero of='{0}' bs=1M count=16 status=none && chmod 600 '{0}' && mkswap '{0}' >/dev/null && swapon '{0}'",
        file.display()
    ));
    let cleanup = Cleanup(format!("swapoff '{}'", file.display()));
    let target = inspect(&file).unwrap();
    let msg = ensure_not_in_use(&file, &target).unwrap_err().to_string();
    assert!(msg.contains("in use as swap"), "{msg}");
    drop(cleanup);
    ensure_not_in_use(&file, &target).unwrap();
}

#[test]
fn exclusive_opener_makes_disk_in_use() {
    let disk = ScratchDisk::new(4 * MIB);
    let holder =
        rustix::fs::open(disk.dev(), OFlags::RDONLY | OFlags::EXCL, Mode::empty()).unwrap();
    assert_in_use(disk.dev(), "the kernel reports it busy");
    drop(holder);
    assert_free(disk.dev());
}

#[test]
fn disk_backing_a_loop_device_is_in_use() {
    let disk = ScratchDisk::new(4 * MIB);
    let stacked = LoopDevice::attach(disk.dev(), 0, 0, true).unwrap();
    assert_in_use(
        disk.dev(),
        &format!("backing device of loop device {}", stacked.path().display()),
    );
    stacked.detach().unwrap();
    assert_free(disk.dev());
}

#[test]
fn writers_refuse_a_mounted_block_device() {
    // Between ensure_not_in_use and the writes, something mounts the disk:
    // wipe, write_gpt and the ESP writer must refuse rather than write under
    // a live filesystem.
    let disk = ScratchDisk::new(64 * MIB);
    sh(&format!("mkfs.ext4 -q -F {}", disk.dev().display()));
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(
        disk.dev(),
        dir.path(),
        "ext4",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let refused = |r: Result<()>| {
        let msg = format!("{:#}", r.unwrap_err());
        assert!(msg.contains("refusing to write to it"), "{msg}");
        assert!(msg.contains(&disk.dev().display().to_string()), "{msg}");
    };
    refused(wipe(disk.dev(), 64 * MIB));
    let layout = crate::disk::layout::Layout::plan(64 * MIB, 34 * MIB, MIB).unwrap();
    refused(crate::disk::gpt::write_gpt(
        disk.dev(),
        &layout,
        &crate::disk::gpt::PartitionIds::random(),
    ));
    let tree = tempfile::tempdir().unwrap();
    refused(crate::disk::fat::format_and_populate(
        disk.dev(),
        "ESP",
        1,
        tree.path(),
    ));
    // Nothing was written: still the same ext4.
    assert_eq!(find_signatures(disk.dev()).unwrap(), vec!["ext4"]);
    m.unmount().unwrap();
    wipe(disk.dev(), 64 * MIB).unwrap();
    assert!(find_signatures(disk.dev()).unwrap().is_empty());
}
