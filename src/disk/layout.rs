//! Where the partitions go: the byte ranges of the ESP and the root
//! partition on the target disk.
//!
//! The layout is computed before anything touches the disk so that a disk
//! that is too small is refused with a clear message, and so that the same
//! offsets drive both the GPT ([`super::gpt`]) and the loop devices that
//! reach the partitions ([`super::loopdev`]).
//!
//! Shape (UEFI spec 2.10 §5.3 "GUID Partition Table Disk Layout"):
//!
//! ```text
//! LBA0 protective MBR | LBA1 GPT header | partition array | gap up to 1 MiB
//! | ESP (1 MiB aligned) | root (1 MiB aligned start) | backup array | backup header
//! ```
//!
//! Partitions start on 1 MiB boundaries, which is what fdisk/parted use and
//! is a multiple of every erase-block and RAID stripe size in common use.
//! The root partition ends on a 4 KiB boundary at or before the start of the
//! backup GPT for 512-byte sectors (33 sectors: 32 for the 128-entry
//! partition array + 1 header). Rounding down to 4 KiB costs at most 3.5 KiB
//! and makes the same layout valid on 4 KiB-sector ("4Kn") disks too, whose
//! backup GPT is 5 sectors of 4 KiB (4 for the array + 1 header) = 20 KiB:
//! for a disk size that is a multiple of 4 KiB, `align_down(size - 33 * 512,
//! 4096)` is exactly `size - 20 KiB`.

use anyhow::{Result, bail};

use crate::util::size::format_size;

/// One mebibyte, the partition alignment.
pub const MIB: u64 = 1 << 20;

/// The sector size the layout is expressed in (the GPT is written with the
/// device's real logical sector size, see [`super::gpt`]).
pub const SECTOR_SIZE: u64 = 512;

/// Bytes the backup GPT occupies at the end of a disk with 512-byte sectors:
/// a 128-entry × 128-byte partition array (32 sectors) and the header.
pub const BACKUP_GPT_BYTES: u64 = 33 * SECTOR_SIZE;

/// The alignment of the root partition's end (the largest logical sector
/// size in use, see the module documentation).
const END_ALIGN: u64 = 4096;

/// A byte range on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    /// Offset of the first byte from the start of the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PartitionRange {
    /// Offset of the first byte after the range.
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// The partitions cbootc creates on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of the whole disk in bytes.
    pub disk_size: u64,
    /// The EFI System Partition.
    pub esp: PartitionRange,
    /// The root filesystem partition.
    pub root: PartitionRange,
}

impl Layout {
    /// Plan the ESP first (starting at 1 MiB, its size rounded up to a whole
    /// MiB so that the root partition also starts 1 MiB aligned), then the
    /// root partition filling the rest of the disk up to the backup GPT (its
    /// end rounded down to 4 KiB, see the module documentation).
    ///
    /// Fails if `disk_size` is not a whole number of 512-byte sectors, if
    /// `esp_size` is zero, or if the disk cannot hold the ESP plus at least
    /// `min_root` bytes of root.
    pub fn plan(disk_size: u64, esp_size: u64, min_root: u64) -> Result<Layout> {
        if disk_size % SECTOR_SIZE != 0 {
            bail!(
                "disk size {disk_size} bytes is not a whole number of {SECTOR_SIZE}-byte sectors"
            );
        }
        if esp_size == 0 {
            bail!("the ESP size must be greater than zero");
        }
        let too_big = || anyhow::anyhow!("ESP size {} is too large", format_size(esp_size));
        let esp = PartitionRange {
            start: MIB,
            size: esp_size.checked_next_multiple_of(MIB).ok_or_else(too_big)?,
        };
        let root_start = esp.start.checked_add(esp.size).ok_or_else(too_big)?;
        // A root partition must have some room even if the caller asks for
        // no minimum: an empty partition cannot be written to a GPT.
        let min_root = min_root.max(SECTOR_SIZE);
        // The smallest disk whose rounded-down root end still leaves
        // `min_root`: align the needed end up, then add the backup GPT.
        let needed = root_start
            .checked_add(min_root)
            .and_then(|end| end.checked_next_multiple_of(END_ALIGN))
            .and_then(|end| end.checked_add(BACKUP_GPT_BYTES))
            .ok_or_else(too_big)?;
        if disk_size < needed {
            bail!(
                "disk of {} is too small: it needs at least {} ({} ESP and {} root, plus 1 MiB before and {} after for the partition tables)",
                format_size(disk_size),
                format_size(needed),
                format_size(esp.size),
                format_size(min_root),
                format_size(BACKUP_GPT_BYTES),
            );
        }
        let root_end = (disk_size - BACKUP_GPT_BYTES) / END_ALIGN * END_ALIGN;
        Ok(Layout {
            disk_size,
            esp,
            root: PartitionRange {
                start: root_start,
                size: root_end - root_start,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn ten_gib_disk() {
        let l = Layout::plan(10 * GIB, 512 * MIB, GIB).unwrap();
        assert_eq!(l.disk_size, 10 * GIB);
        assert_eq!(
            l.esp,
            PartitionRange {
                start: MIB,
                size: 512 * MIB
            }
        );
        assert_eq!(l.root.start, 513 * MIB);
        // Ends 20 KiB before the end: room for the backup GPT with 512-byte
        // sectors (16.5 KiB) and with 4096-byte sectors (20 KiB).
        assert_eq!(l.root.end(), 10 * GIB - 20 * 1024);
        assert!(l.root.end() <= l.disk_size - BACKUP_GPT_BYTES);
    }

    #[test]
    fn esp_size_rounded_up_to_mib() {
        let l = Layout::plan(4 * GIB, 100 * MIB + 1, MIB).unwrap();
        assert_eq!(l.esp.size, 101 * MIB);
        assert_eq!(l.root.start, 102 * MIB);
        assert_eq!(l.root.start % MIB, 0);
    }

    #[test]
    fn odd_sector_count_disk() {
        // A disk of an odd number of 512-byte sectors: the root end is still
        // 4 KiB aligned and before the backup GPT.
        let disk = 3 * GIB + 7 * 512;
        let l = Layout::plan(disk, 256 * MIB, MIB).unwrap();
        assert_eq!(l.root.end() % 4096, 0);
        assert!(l.root.end() <= disk - BACKUP_GPT_BYTES);
        assert!(disk - BACKUP_GPT_BYTES - l.root.end() < 4096);
    }

    #[test]
    fn exact_minimum_fits_and_one_sector_less_does_not() {
        let esp = 64 * MIB;
        let min_root = 100 * MIB;
        let needed = MIB + esp + min_root + BACKUP_GPT_BYTES;
        let l = Layout::plan(needed, esp, min_root).unwrap();
        assert_eq!(l.root.size, min_root);
        let err = Layout::plan(needed - 512, esp, min_root).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("disk of 165.0 MiB is too small"), "{msg}");
        assert!(msg.contains("at least 165.0 MiB"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn too_small_names_both_sizes() {
        let msg = Layout::plan(GIB, 512 * MIB, 4 * GIB)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("disk of 1.0 GiB is too small"), "{msg}");
        assert!(msg.contains("at least 4.5 GiB"), "{msg}");
    }

    #[test]
    fn invalid_inputs() {
        assert!(
            Layout::plan(GIB + 1, 512 * MIB, MIB)
                .unwrap_err()
                .to_string()
                .contains("not a whole number of 512-byte sectors")
        );
        assert!(
            Layout::plan(GIB, 0, MIB)
                .unwrap_err()
                .to_string()
                .contains("ESP size must be greater than zero")
        );
        assert!(
            Layout::plan(GIB, u64::MAX - 10, MIB)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        // Zero minimum root still needs a non-empty root partition.
        let l = Layout::plan(MIB + MIB + 4096 + BACKUP_GPT_BYTES, MIB, 0).unwrap();
        assert_eq!(l.root.size, 4096);
    }
}
