//! Writing the partition table: a protective MBR and the primary and backup
//! GUID Partition Tables, with exactly the partitions of a [`Layout`].
//!
//! The table is written with the `gpt` crate rather than `sfdisk` so that the
//! offsets are exactly the ones cbootc computed (and then reaches through loop
//! devices) and so that the disk GUID and partition UUIDs are the ones
//! recorded in the boot entries, with no tool version deciding otherwise.
//!
//! Partition types:
//! - ESP: C12A7328-F81F-11D2-BA4B-00A0C93EC93B (UEFI spec 2.10 §5.3.3,
//!   table 5-7 "Defined GPT Partition Entry - Partition Type GUIDs").
//! - root: 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, "Root Partition (x86-64)"
//!   of the UAPI Group's Discoverable Partitions Specification, so that
//!   systemd-gpt-auto-generator and other tools can find it without an fstab.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use gpt::partition_types;

use super::layout::{Layout, PartitionRange};

/// The identities written into the GPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionIds {
    /// The disk GUID in the GPT header.
    pub disk_guid: uuid::Uuid,
    /// Unique partition GUID of the ESP (`PARTUUID=` in Linux).
    pub esp_partuuid: uuid::Uuid,
    /// Unique partition GUID of the root partition.
    pub root_partuuid: uuid::Uuid,
}

impl PartitionIds {
    /// Fresh random (version 4) identities.
    pub fn random() -> Self {
        Self {
            disk_guid: uuid::Uuid::new_v4(),
            esp_partuuid: uuid::Uuid::new_v4(),
            root_partuuid: uuid::Uuid::new_v4(),
        }
    }
}

/// Type GUID of the EFI System Partition.
pub const ESP_TYPE: uuid::Uuid = uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// Type GUID of an x86-64 root partition (Discoverable Partitions Spec).
pub const ROOT_X86_64_TYPE: uuid::Uuid = uuid::uuid!("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
/// The GPT partition name of the ESP.
pub const ESP_NAME: &str = "ESP";
/// The GPT partition name of the root partition.
pub const ROOT_NAME: &str = "root";

/// Write a protective MBR and the primary and backup GPT to `device` (a
/// regular file of exactly `layout.disk_size` bytes, or a block device of
/// that size), with the ESP as partition 1 and root as partition 2 at exactly
/// the layout's offsets, then fsync.
///
/// The logical sector size is 512 bytes for a file and the device's own
/// (BLKSSZGET) for a block device; the layout must be aligned to it.
pub fn write_gpt(device: &Path, layout: &Layout, ids: &PartitionIds) -> Result<()> {
    let shown = device.display();
    let mut file = super::probe::open_for_writing(device)?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading metadata of {shown}"))?;
    let sector: u64 = if meta.file_type().is_block_device() {
        rustix::fs::ioctl_blksszget(&file)
            .with_context(|| format!("reading the logical sector size of {shown}"))?
            .into()
    } else if meta.is_file() {
        512
    } else {
        bail!("{shown} is not a block device or disk image file");
    };
    let lb_size = match sector {
        512 => LogicalBlockSize::Lb512,
        4096 => LogicalBlockSize::Lb4096,
        other => bail!("{shown} has {other}-byte sectors; only 512 and 4096 are supported"),
    };
    let size = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("reading the size of {shown}"))?;
    file.rewind()
        .with_context(|| format!("seeking in {shown}"))?;
    ensure!(
        size == layout.disk_size,
        "{shown} is {size} bytes but the partition layout was planned for {} bytes",
        layout.disk_size
    );
    ensure!(
        size % sector == 0,
        "{shown} is {size} bytes, not a whole number of {sector}-byte sectors"
    );
    let total_lbas = size / sector;

    // Start from zeroed table areas so that nothing of an older table (such
    // as the tail of a 4 KiB LBA0, which the crate's MBR writer leaves as
    // is) survives next to the new one. The areas are at most 6 sectors at
    // the start and 5 at the end (128 entries of 128 bytes).
    let table_bytes = sector + 128 * 128;
    zero_range(&mut file, 0, sector + table_bytes)
        .with_context(|| format!("clearing the primary GPT area of {shown}"))?;
    zero_range(&mut file, size - table_bytes, table_bytes)
        .with_context(|| format!("clearing the backup GPT area of {shown}"))?;

    // UEFI spec 2.10 §5.2.3: the protective MBR's single 0xEE partition
    // covers LBA 1 up to the end of the disk, or 0xFFFFFFFF if that does not
    // fit in 32 bits.
    let pmbr_size = u32::try_from(total_lbas - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(pmbr_size)
        .overwrite_lba0(&mut file)
        .with_context(|| format!("writing the protective MBR of {shown}"))?;

    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb_size)
        .create_from_device(&mut file, Some(ids.disk_guid))
        .with_context(|| format!("creating a GPT for {shown}"))?;
    let header = disk.header();
    let (first_usable, last_usable) = (header.first_usable, header.last_usable);
    let entry = |range: &PartitionRange, what: &str| -> Result<(u64, u64)> {
        ensure!(
            range.start % sector == 0 && range.size % sector == 0 && range.size > 0,
            "the {what} partition ({} bytes at offset {}) is not aligned to the {sector}-byte sectors of {shown}",
            range.size,
            range.start
        );
        let (first, last) = (range.start / sector, range.end() / sector - 1);
        ensure!(
            first >= first_usable && last <= last_usable,
            "the {what} partition (sectors {first}-{last}) is outside the usable sectors {first_usable}-{last_usable} of {shown}"
        );
        Ok((first, last))
    };
    let (esp_first, esp_last) = entry(&layout.esp, "ESP")?;
    let (root_first, root_last) = entry(&layout.root, "root")?;
    ensure!(
        esp_last < root_first,
        "the ESP and root partitions overlap in the layout for {shown}"
    );
    let partitions = BTreeMap::from([
        (
            1,
            Partition {
                part_type_guid: partition_types::EFI,
                part_guid: ids.esp_partuuid,
                first_lba: esp_first,
                last_lba: esp_last,
                flags: 0,
                name: ESP_NAME.to_string(),
            },
        ),
        (
            2,
            Partition {
                part_type_guid: partition_types::LINUX_ROOT_X64,
                part_guid: ids.root_partuuid,
                first_lba: root_first,
                last_lba: root_last,
                flags: 0,
                name: ROOT_NAME.to_string(),
            },
        ),
    ]);
    disk.update_partitions(partitions)
        .with_context(|| format!("building the GPT for {shown}"))?;
    disk.write()
        .with_context(|| format!("writing the GPT to {shown}"))?;
    file.sync_all()
        .with_context(|| format!("syncing {shown}"))?;
    Ok(())
}

fn zero_range(file: &mut File, start: u64, len: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let zeros = vec![0u8; len as usize];
    file.write_all(&zeros)?;
    file.rewind()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::MIB;
    use serde_json::Value;

    #[test]
    fn type_constants_match_the_gpt_crate() {
        assert_eq!(partition_types::EFI.guid, ESP_TYPE);
        assert_eq!(partition_types::LINUX_ROOT_X64.guid, ROOT_X86_64_TYPE);
    }

    fn sfdisk_json(path: &Path) -> Value {
        let out = crate::util::command::run(
            "sfdisk",
            &[std::ffi::OsStr::new("--json"), path.as_os_str()],
        )
        .unwrap();
        serde_json::from_str(&out).unwrap()
    }

    fn image(size: u64) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(size).unwrap();
        f
    }

    #[test]
    fn sfdisk_reads_back_exact_layout() {
        let size = 2048 * MIB + 7 * 512;
        let img = image(size);
        let layout = Layout::plan(size, 300 * MIB, 100 * MIB).unwrap();
        let ids = PartitionIds::random();
        write_gpt(img.path(), &layout, &ids).unwrap();

        let json = sfdisk_json(img.path());
        let pt = &json["partitiontable"];
        assert_eq!(pt["label"], "gpt");
        assert_eq!(pt["sectorsize"], 512);
        assert_eq!(
            pt["id"].as_str().unwrap(),
            ids.disk_guid.hyphenated().to_string().to_uppercase()
        );
        assert_eq!(pt["firstlba"], 34);
        assert_eq!(pt["lastlba"], size / 512 - 34);
        let parts = pt["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        let check =
            |p: &Value, range: &PartitionRange, ty: &uuid::Uuid, uuid: &uuid::Uuid, name: &str| {
                assert_eq!(p["start"], range.start / 512);
                assert_eq!(p["size"], range.size / 512);
                assert_eq!(
                    p["type"].as_str().unwrap(),
                    ty.hyphenated().to_string().to_uppercase()
                );
                assert_eq!(
                    p["uuid"].as_str().unwrap(),
                    uuid.hyphenated().to_string().to_uppercase()
                );
                assert_eq!(p["name"], name);
            };
        check(&parts[0], &layout.esp, &ESP_TYPE, &ids.esp_partuuid, "ESP");
        check(
            &parts[1],
            &layout.root,
            &ROOT_X86_64_TYPE,
            &ids.root_partuuid,
            "root",
        );
        assert_eq!(parts[0]["start"], 2048);

        // sfdisk --verify complains about a missing/corrupt backup header or
        // a PMBR that does not cover the disk.
        let verify = crate::util::command::run(
            "sfdisk",
            &[std::ffi::OsStr::new("--verify"), img.path().as_os_str()],
        )
        .unwrap();
        assert!(verify.contains("No errors detected."), "{verify}");

        // The protective MBR (UEFI spec §5.2.3).
        let read_at = |offset: u64, len: usize| {
            let mut buf = vec![0u8; len];
            std::os::unix::fs::FileExt::read_exact_at(img.as_file(), &mut buf, offset).unwrap();
            buf
        };
        let bytes = read_at(0, 1024);
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
        assert_eq!(bytes[446 + 4], 0xEE);
        assert_eq!(u32::from_le_bytes(bytes[454..458].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(bytes[458..462].try_into().unwrap()) as u64,
            size / 512 - 1
        );
        // Primary and backup headers.
        assert_eq!(&bytes[512..520], b"EFI PART");
        assert_eq!(&read_at(size - 512, 8), b"EFI PART");
    }

    #[test]
    fn overwrites_an_older_table() {
        let size = 1024 * MIB;
        let img = image(size);
        // An older MBR table with 3 partitions.
        let mut cmd = std::process::Command::new("sfdisk");
        cmd.arg("--quiet").arg(img.path());
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: dos\n,100M\n,100M\n,100M\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(sfdisk_json(img.path())["partitiontable"]["label"], "dos");

        let layout = Layout::plan(size, 100 * MIB, 100 * MIB).unwrap();
        write_gpt(img.path(), &layout, &PartitionIds::random()).unwrap();
        let json = sfdisk_json(img.path());
        assert_eq!(json["partitiontable"]["label"], "gpt");
        assert_eq!(
            json["partitiontable"]["partitions"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn refuses_size_mismatch_and_directories() {
        let img = image(1024 * MIB);
        let layout = Layout::plan(2048 * MIB, 100 * MIB, 100 * MIB).unwrap();
        let msg = format!(
            "{:#}",
            write_gpt(img.path(), &layout, &PartitionIds::random()).unwrap_err()
        );
        assert!(
            msg.contains("but the partition layout was planned for"),
            "{msg}"
        );
        assert!(msg.contains(&img.path().display().to_string()), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let msg = format!(
            "{:#}",
            write_gpt(dir.path(), &layout, &PartitionIds::random()).unwrap_err()
        );
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn same_layout_fits_a_4k_sector_disk() {
        // A 4Kn disk, emulated by a loop device with 4096-byte logical
        // blocks: the layout planned with the 512-byte rules must fit, and
        // the GPT must be written in 4096-byte LBAs.
        let size = 1024 * MIB;
        let img = image(size);
        let lo =
            crate::disk::loopdev::LoopDevice::attach_with_block_size(img.path(), 0, 0, false, 4096)
                .unwrap();
        let layout = Layout::plan(size, 100 * MIB, 100 * MIB).unwrap();
        let ids = PartitionIds::random();
        write_gpt(lo.path(), &layout, &ids).unwrap();
        let json = sfdisk_json(lo.path());
        lo.detach().unwrap();
        let pt = &json["partitiontable"];
        assert_eq!(pt["sectorsize"], 4096);
        assert_eq!(pt["firstlba"], 6);
        let parts = pt["partitions"].as_array().unwrap();
        assert_eq!(parts[0]["start"], MIB / 4096);
        assert_eq!(parts[0]["size"], layout.esp.size / 4096);
        assert_eq!(parts[1]["start"], layout.root.start / 4096);
        assert_eq!(parts[1]["size"], layout.root.size / 4096);
        assert_eq!(pt["lastlba"], (layout.root.end() / 4096) - 1);
        assert_eq!(
            parts[1]["uuid"].as_str().unwrap(),
            ids.root_partuuid.hyphenated().to_string().to_uppercase()
        );
    }
}
