//! Looking at the install target before touching it: what it is, whether
//! anything uses it, and whether it holds data (partition tables or
//! filesystems) that installing would destroy.
//!
//! The signature checks are hand-rolled magic numbers at fixed offsets,
//! rather than libblkid, so that cbootc needs no C library and the check is
//! the same in every container. They err on the side of reporting: a false
//! "not blank" only asks the user to confirm the wipe, a false "blank" would
//! destroy data. Each check cites where its offset comes from; the tests
//! compare every one against `blkid -p` on real mkfs output.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::layout::MIB;
use super::{loopdev, mountinfo};

/// What the install target path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Nothing there yet (a disk image file to create).
    Missing,
    /// A regular file (a disk image).
    File,
    /// A block device (a disk).
    BlockDevice,
}

/// The install target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// What it is.
    pub kind: TargetKind,
    /// Its size in bytes (0 when missing).
    pub size: u64,
}

/// Stat the target (following symlinks such as `/dev/disk/by-id/…`). Errors
/// for anything but a regular file, a block device or a missing path, and
/// for missing paths under `/dev` or behind a dangling symlink.
pub fn inspect(path: &Path) -> Result<Target> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A missing disk must not turn into a new image file: /dev is
            // for devices (a typo, or a disk not passed into the container),
            // and a dangling symlink would be written through.
            if path.starts_with("/dev") {
                bail!(
                    "{shown} does not exist: no such disk (inside a container, pass the device in, e.g. with `-v /dev:/dev`)"
                );
            }
            if std::fs::symlink_metadata(path).is_ok() {
                bail!("{shown} is a symlink to a path that does not exist");
            }
            return Ok(Target {
                kind: TargetKind::Missing,
                size: 0,
            });
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting {shown}")),
    };
    if meta.is_file() {
        Ok(Target {
            kind: TargetKind::File,
            size: meta.len(),
        })
    } else if meta.file_type().is_block_device() {
        // st_size of a device node is 0: ask the device (lseek to the end
        // returns the block device's size, like BLKGETSIZE64).
        let size = File::open(path)
            .and_then(|mut f| f.seek(SeekFrom::End(0)))
            .with_context(|| format!("reading the size of {shown}"))?;
        Ok(Target {
            kind: TargetKind::BlockDevice,
            size,
        })
    } else {
        bail!("{shown} is not a block device or disk image file");
    }
}

/// Refuse a target that something uses: a mounted filesystem on the device
/// or any of its partitions, a device-mapper/LVM/RAID holder, swap, a loop
/// device backed by it, or (for block devices) any exclusive opener.
pub fn ensure_not_in_use(path: &Path, target: &Target) -> Result<()> {
    match target.kind {
        TargetKind::Missing => Ok(()),
        TargetKind::File => file_not_in_use(path),
        TargetKind::BlockDevice => block_not_in_use(path),
    }
}

fn file_not_in_use(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("inspecting {shown}"))?;
    let canonical = path
        .canonicalize()
        .with_context(|| format!("resolving {shown}"))?;
    // Loop devices: by device and inode number through LOOP_GET_STATUS64
    // (valid across mount namespaces), and by sysfs path for loop devices
    // without a node in this /dev.
    for b in loopdev::bindings()? {
        if b.backing_dev == meta.dev() && b.backing_ino == meta.ino() {
            bail!(
                "{shown} is in use: it is the backing file of loop device {}; detach it first (losetup -d {})",
                b.device.display(),
                b.device.display()
            );
        }
    }
    for (lo, backing) in sysfs_loop_backing_files() {
        if backing == canonical {
            bail!(
                "{shown} is in use: it is the backing file of loop device /dev/{lo}; detach it first (losetup -d /dev/{lo})"
            );
        }
    }
    // File-backed mounts without a loop device (e.g. EROFS, Linux ≥ 6.12).
    for m in mountinfo::read()? {
        if Path::new(&m.source) == canonical {
            bail!(
                "{shown} is in use: it is mounted on {}",
                m.mount_point.display()
            );
        }
    }
    for swap in swaps()? {
        if let Ok(s) = std::fs::metadata(&swap)
            && s.is_file()
            && s.dev() == meta.dev()
            && s.ino() == meta.ino()
        {
            bail!("{shown} is in use as swap; run swapoff {shown} first");
        }
    }
    Ok(())
}

/// A block device or one of its partitions.
#[derive(Debug)]
struct BlockNode {
    /// Kernel name, e.g. `sda2`.
    name: String,
    /// Device number.
    rdev: u64,
    /// `/sys/class/block/<name>` (resolved).
    sysfs: PathBuf,
}

impl BlockNode {
    fn dev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/{}", self.name))
    }
}

/// The device at `path` and its partitions, from sysfs.
fn block_family(path: &Path, rdev: u64) -> Result<Vec<BlockNode>> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let sysfs = link.canonicalize().with_context(|| {
        format!(
            "finding {} ({major}:{minor}) in {}",
            path.display(),
            link.display()
        )
    })?;
    let name = sysfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut family = vec![BlockNode { name, rdev, sysfs }];
    let whole = family[0].sysfs.clone();
    for entry in
        std::fs::read_dir(&whole).with_context(|| format!("listing {}", whole.display()))?
    {
        let entry = entry.with_context(|| format!("listing {}", whole.display()))?;
        let dir = entry.path();
        // Partitions are the subdirectories with a `partition` attribute
        // (Documentation/ABI/stable/sysfs-block).
        if !dir.join("partition").exists() {
            continue;
        }
        let Some(rdev) = std::fs::read_to_string(dir.join("dev"))
            .ok()
            .and_then(|d| parse_devnum(&d))
        else {
            continue;
        };
        family.push(BlockNode {
            name: entry.file_name().to_string_lossy().into_owned(),
            rdev,
            sysfs: dir,
        });
    }
    Ok(family)
}

fn parse_devnum(s: &str) -> Option<u64> {
    let (major, minor) = s.trim().split_once(':')?;
    Some(rustix::fs::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

fn block_not_in_use(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("inspecting {shown}"))?;
    let family = block_family(path, meta.rdev())?;
    let dev_paths: Vec<PathBuf> = family
        .iter()
        .map(|n| n.dev_path().canonicalize().unwrap_or_else(|_| n.dev_path()))
        .collect();
    let given = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let is_ours = |p: &Path| -> Option<PathBuf> {
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if p == given {
            return Some(given.clone());
        }
        dev_paths.iter().find(|d| **d == p).cloned()
    };

    // Mounted: by device number, and by source path for filesystems whose
    // st_dev is an anonymous device (btrfs).
    for m in mountinfo::read()? {
        let devnum = rustix::fs::makedev(m.major, m.minor);
        let by_num = family
            .iter()
            .find(|n| n.rdev == devnum)
            .map(|n| n.dev_path());
        let by_source = m
            .source
            .starts_with('/')
            .then(|| is_ours(Path::new(&m.source)))
            .flatten();
        if let Some(dev) = by_num.or(by_source) {
            bail!(
                "{shown} is in use: {} is mounted on {}",
                dev.display(),
                m.mount_point.display()
            );
        }
    }
    check_holders(path, &family, Path::new("/sys/class/block"))?;
    for swap in swaps()? {
        if let Ok(s) = std::fs::metadata(&swap)
            && s.file_type().is_block_device()
            && let Some(node) = family.iter().find(|n| n.rdev == s.rdev())
        {
            bail!(
                "{shown} is in use: {} is active swap; run swapoff {} first",
                node.dev_path().display(),
                node.dev_path().display()
            );
        }
    }
    // Loop devices reading from the disk or a partition.
    for b in loopdev::bindings()? {
        if let Some(node) = family
            .iter()
            .find(|n| n.rdev == b.backing_rdev && b.backing_rdev != 0)
        {
            bail!(
                "{shown} is in use: {} is the backing device of loop device {}; detach it first (losetup -d {})",
                node.dev_path().display(),
                b.device.display(),
                b.device.display()
            );
        }
    }
    for (lo, backing) in sysfs_loop_backing_files() {
        if let Some(dev) = is_ours(&backing) {
            bail!(
                "{shown} is in use: {} is the backing device of loop device /dev/{lo}; detach it first (losetup -d /dev/{lo})",
                dev.display()
            );
        }
    }
    ensure_no_exclusive_opener(path)
}

/// Holders: device-mapper (LVM, LUKS), MD RAID, bcache… stacked on the
/// disk or a partition appear as links in its `holders/` directory
/// (Documentation/ABI/stable/sysfs-block). `class_block` is
/// `/sys/class/block`, where a device-mapper holder's name is in `dm/name`.
fn check_holders(path: &Path, family: &[BlockNode], class_block: &Path) -> Result<()> {
    for node in family {
        let Ok(entries) = std::fs::read_dir(node.sysfs.join("holders")) else {
            continue;
        };
        let mut holders: Vec<String> = entries
            .flatten()
            .map(|h| h.file_name().to_string_lossy().into_owned())
            .collect();
        holders.sort();
        if let Some(name) = holders.first() {
            let dm_name = std::fs::read_to_string(class_block.join(name).join("dm/name"))
                .map(|n| format!(" ({})", n.trim()))
                .unwrap_or_default();
            bail!(
                "{} is in use: {} is held by {name}{dm_name} (device-mapper, LVM, RAID or similar); deactivate it first",
                path.display(),
                node.dev_path().display()
            );
        }
    }
    Ok(())
}

/// An `O_EXCL` open of a block device fails with EBUSY while anything holds
/// it (or one of its partitions) exclusively: a mounted filesystem, swap,
/// MD/DM, or a program such as a running mkfs (open(2), "O_EXCL … on block
/// devices").
fn ensure_no_exclusive_opener(path: &Path) -> Result<()> {
    match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(_) => Ok(()),
        Err(Errno::BUSY) => bail!(
            "{} is in use: the kernel reports it busy (mounted, active swap, part of a RAID/LVM/device-mapper stack, or opened exclusively by another program)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {} exclusively", path.display())),
    }
}

/// `(loopN, backing file)` for every bound loop device, from
/// `/sys/block/loopN/loop/backing_file`.
fn sysfs_loop_backing_files() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                return None;
            }
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            Some((name, PathBuf::from(backing.trim_end_matches('\n'))))
        })
        .collect()
}

/// Active swap areas (`/proc/swaps`, first column, octal-escaped like
/// mountinfo).
fn swaps() -> Result<Vec<PathBuf>> {
    let text = match std::fs::read_to_string("/proc/swaps") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("reading /proc/swaps"),
    };
    let fake = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| format!("0 0 0:0 / {name} rw - swap none rw"))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(mountinfo::parse(&fake)?
        .into_iter()
        .map(|m| m.mount_point)
        .collect())
}

/// How much of the start of the device the signature checks read: the
/// farthest magic is btrfs's at 64 KiB + 64, and swap's at 64 KiB - 10 for
/// 64 KiB pages.
const HEAD_LEN: usize = 128 * 1024;
/// How much of the end: the backup GPT header in the last LBA, for up to
/// 4096-byte sectors.
const TAIL_LEN: usize = 4096;

/// Names of the partition-table and filesystem signatures found on `path`:
/// "gpt", "dos", "ext4", "ext2/3", "xfs", "btrfs", "vfat", "LUKS", "swap",
/// "iso9660", "erofs", "squashfs". Empty means blank (e.g. all zeros).
pub fn find_signatures(path: &Path) -> Result<Vec<String>> {
    let shown = path.display();
    let mut file = File::open(path).with_context(|| format!("opening {shown} to probe it"))?;
    let size = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("reading the size of {shown}"))?;
    let head = read_at_most(&file, 0, HEAD_LEN).with_context(|| format!("reading {shown}"))?;
    let tail_start = size.saturating_sub(TAIL_LEN as u64);
    let tail =
        read_at_most(&file, tail_start, TAIL_LEN).with_context(|| format!("reading {shown}"))?;
    Ok(detect(&head, &tail).into_iter().map(String::from).collect())
}

/// Read up to `len` bytes at `offset`, fewer at the end of the file.
fn read_at_most(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

fn bytes_at(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

fn le16(buf: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes_at(buf, offset, 2)?.try_into().ok()?,
    ))
}

fn le32(buf: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes_at(buf, offset, 4)?.try_into().ok()?,
    ))
}

fn has(buf: &[u8], offset: usize, magic: &[u8]) -> bool {
    bytes_at(buf, offset, magic.len()) == Some(magic)
}

/// The signatures in `head` (the first bytes of the device) and `tail` (its
/// last bytes).
fn detect(head: &[u8], tail: &[u8]) -> Vec<&'static str> {
    let mut found = Vec::new();
    let vfat = is_vfat(head);
    let mbr = mbr_kind(head, vfat);

    // GPT header signature "EFI PART" in LBA 1 (primary) or the last LBA
    // (backup), for 512- and 4096-byte sectors (UEFI spec 2.10 §5.3.2). A
    // protective MBR alone (§5.2.3) also marks a GPT disk whose headers are
    // damaged.
    let gpt_primary = has(head, 512, b"EFI PART") || has(head, 4096, b"EFI PART");
    let gpt_backup = [512, 4096].iter().any(|&sector| {
        tail.len()
            .checked_sub(sector)
            .is_some_and(|at| has(tail, at, b"EFI PART"))
    });
    if gpt_primary || gpt_backup || mbr.protective {
        found.push("gpt");
    }
    if mbr.dos {
        found.push("dos");
    }
    // ext2/3/4: s_magic 0xEF53 at offset 56 of the superblock, which starts
    // at 1024 (Documentation/filesystems/ext4/super.rst).
    if le16(head, 1024 + 56) == Some(0xEF53) {
        found.push(ext_kind(head));
    }
    // XFS: sb_magicnum "XFSB" at the start of the primary superblock, at 0
    // (XFS Algorithms & Data Structures, "Superblocks").
    if has(head, 0, b"XFSB") {
        found.push("xfs");
    }
    // btrfs: magic "_BHRfS_M" at offset 64 of the superblock at 64 KiB
    // (btrfs docs, "On-disk format: superblock").
    if has(head, 65536 + 64, b"_BHRfS_M") {
        found.push("btrfs");
    }
    if vfat {
        found.push("vfat");
    }
    // LUKS1 and LUKS2: magic "LUKS\xba\xbe" at 0 (LUKS2 on-disk format
    // specification §2.1).
    if has(head, 0, b"LUKS\xba\xbe") {
        found.push("LUKS");
    }
    // Swap: "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of
    // the first page (include/linux/swap.h, union swap_header); the page
    // size is that of the machine that ran mkswap, so try the common ones.
    if [4096, 8192, 16384, 65536]
        .iter()
        .any(|&page| has(head, page - 10, b"SWAPSPACE2") || has(head, page - 10, b"SWAP-SPACE"))
    {
        found.push("swap");
    }
    // ISO 9660: standard identifier "CD001" at byte 1 of the first volume
    // descriptor, at sector 16 of 2048 bytes (ECMA-119 §8.1, §6.2.1).
    if has(head, 16 * 2048 + 1, b"CD001") {
        found.push("iso9660");
    }
    // EROFS: magic 0xE0F5E1E2 at the start of the superblock at 1024
    // (fs/erofs/erofs_fs.h, EROFS_SUPER_OFFSET).
    if le32(head, 1024) == Some(0xE0F5_E1E2) {
        found.push("erofs");
    }
    // SquashFS: magic 0x73717368 at 0, "hsqs" little-endian ("sqsh" for the
    // big-endian squashfs 3 and older).
    if has(head, 0, b"hsqs") || has(head, 0, b"sqsh") {
        found.push("squashfs");
    }
    found
}

/// ext4 when the superblock has features ext3 lacks, as libblkid decides:
/// incompat features beyond FILETYPE|RECOVER|META_BG|JOURNAL_DEV or
/// ro_compat features beyond SPARSE_SUPER|LARGE_FILE|BTREE_DIR (fields at
/// superblock offsets 0x60 and 0x64).
fn ext_kind(head: &[u8]) -> &'static str {
    const EXT3_INCOMPAT: u32 = 0x0002 | 0x0004 | 0x0008 | 0x0010;
    const EXT3_RO_COMPAT: u32 = 0x0001 | 0x0002 | 0x0004;
    let incompat = le32(head, 1024 + 0x60).unwrap_or(0);
    let ro_compat = le32(head, 1024 + 0x64).unwrap_or(0);
    if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        "ext4"
    } else {
        "ext2/3"
    }
}

/// A FAT12/16/32 boot sector: a jump instruction and a plausible BIOS
/// Parameter Block (Microsoft FAT specification, "fatgen103" §3.1–3.3),
/// plus either the 0x55AA signature or a "FAT" type string (at 54 for
/// FAT12/16, 82 for FAT32).
fn is_vfat(b: &[u8]) -> bool {
    let Some(boot) = bytes_at(b, 0, 512) else {
        return false;
    };
    let jump = (boot[0] == 0xEB && boot[2] == 0x90) || boot[0] == 0xE9;
    let bytes_per_sector = le16(boot, 11).unwrap_or(0);
    let sectors_per_cluster = boot[13];
    let reserved_sectors = le16(boot, 14).unwrap_or(0);
    let fats = boot[16];
    let media = boot[21];
    let bpb = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved_sectors >= 1
        && (1..=2).contains(&fats)
        && (media == 0xF0 || media >= 0xF8);
    let marked = has(boot, 510, &[0x55, 0xAA]) || has(boot, 54, b"FAT") || has(boot, 82, b"FAT");
    jump && bpb && marked
}

struct MbrKind {
    /// A 0xEE (GPT protective) entry.
    protective: bool,
    /// A DOS partition table with real entries.
    dos: bool,
}

/// Classic MBR: signature 0x55AA at 510 and four 16-byte partition entries
/// at 446 whose boot indicator is 0x00 or 0x80, at least one in use (type
/// byte at +4 non-zero, start LBA at +8 non-zero). A FAT boot sector also
/// ends in 0x55AA, with boot code where the entries would be, so it is not
/// a partition table.
fn mbr_kind(b: &[u8], vfat: bool) -> MbrKind {
    let none = MbrKind {
        protective: false,
        dos: false,
    };
    if vfat || !has(b, 510, &[0x55, 0xAA]) {
        return none;
    }
    let entries: Vec<&[u8]> = (0..4)
        .filter_map(|i| bytes_at(b, 446 + 16 * i, 16))
        .collect();
    if entries.len() != 4 || entries.iter().any(|e| e[0] != 0 && e[0] != 0x80) {
        return none;
    }
    let used: Vec<u8> = entries
        .iter()
        .filter(|e| e[4] != 0 && le32(e, 8).unwrap_or(0) != 0)
        .map(|e| e[4])
        .collect();
    MbrKind {
        // A 0xEE entry, alone or beside others in a "hybrid" MBR, marks a
        // GPT disk (UEFI spec 2.10 §5.2.3).
        protective: used.contains(&0xEE),
        dos: used.iter().any(|&t| t != 0xEE),
    }
}

/// Open `path` (an existing regular file or block device) for reading and
/// writing; a block device exclusively (`O_EXCL`, see open(2)): the open
/// fails with EBUSY if anything has it or a partition of it mounted or
/// claimed, and while it is held nothing can mount it. This closes the gap
/// between [`ensure_not_in_use`] and the writes.
pub fn open_for_writing(path: &Path) -> Result<File> {
    let shown = path.display();
    let is_block = std::fs::metadata(path)
        .with_context(|| format!("inspecting {shown}"))?
        .file_type()
        .is_block_device();
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if is_block {
        options.custom_flags(OFlags::EXCL.bits() as i32);
    }
    options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) {
            anyhow::anyhow!(
                "{shown} is in use (mounted, active swap, or held by another program); refusing to write to it"
            )
        } else {
            anyhow::Error::new(e).context(format!("opening {shown} for writing"))
        }
    })
}

/// Erase the signatures so that the device looks blank: zero the first and
/// last MiB of the `size` bytes (covering the MBR, both GPTs and the
/// superblocks checked by [`find_signatures`]), then fsync.
pub fn wipe(path: &Path, size: u64) -> Result<()> {
    let shown = path.display();
    let mut file = open_for_writing(path)?;
    let actual = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("reading the size of {shown}"))?;
    ensure!(
        size <= actual,
        "cannot wipe {size} bytes of {shown}: it is only {actual} bytes"
    );
    let zeros = vec![0u8; MIB as usize];
    let head = size.min(MIB);
    let tail_start = size.saturating_sub(MIB).max(head);
    file.write_all_at(&zeros[..head as usize], 0)
        .with_context(|| format!("wiping the start of {shown}"))?;
    file.write_all_at(&zeros[..(size - tail_start) as usize], tail_start)
        .with_context(|| format!("wiping the end of {shown}"))?;
    file.sync_all()
        .with_context(|| format!("syncing {shown} after wiping it"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
