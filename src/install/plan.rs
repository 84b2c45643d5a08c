//! Decisions made before anything is written: how big the disk is, whether
//! the image fits, and the fs-verity policy. Pure functions, so every
//! refusal is unit-tested.

use anyhow::{Result, bail};

use crate::deploy::record::Verity;
use crate::disk::layout::MIB;
use crate::disk::mkfs::FsKind;
use crate::disk::probe::{Target, TargetKind};
use crate::util::size::format_size;

/// `--verity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerityMode {
    /// Required where the filesystem and the running kernel support it,
    /// optional otherwise.
    Auto,
    /// Required; refuse to install where it cannot work.
    Required,
    /// Optional, and the filesystem is made without the verity feature.
    Off,
}

impl std::str::FromStr for VerityMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => VerityMode::Auto,
            "required" => VerityMode::Required,
            "off" => VerityMode::Off,
            _ => bail!("invalid --verity {s:?}: expected auto, required or off"),
        })
    }
}

/// Default ESP size (`--esp-size`): room for several deployments'
/// kernels and initramfs images, which is where GRUB reads them from.
pub const DEFAULT_ESP_SIZE: u64 = 1024 * MIB;

/// The smallest ESP cbootc makes: FAT32 needs 65525 clusters, which at
/// 512-byte sectors and 1 sector per cluster is about 33 MiB; UEFI firmware
/// is happiest with ≥ 100 MiB.
pub const MIN_ESP_SIZE: u64 = 100 * MIB;

/// The size the disk will have: the block device's size, or for a file
/// `--size` (required for a new file; an existing file is grown, never
/// shrunk) or else its current size.
pub fn disk_size(target: &Target, path: &str, size: Option<u64>) -> Result<u64> {
    match (target.kind, size) {
        (TargetKind::BlockDevice, Some(_)) => {
            bail!("--size only applies to disk image files; {path} is a block device")
        }
        (TargetKind::BlockDevice, None) => Ok(target.size),
        (TargetKind::Missing, None) => {
            bail!("{path} does not exist: pass --size to create a disk image file")
        }
        (TargetKind::Missing, Some(s)) => Ok(s),
        (TargetKind::File, None) if target.size == 0 => {
            bail!("{path} is empty: pass --size to grow it into a disk image")
        }
        (TargetKind::File, None) => Ok(target.size),
        (TargetKind::File, Some(s)) if s < target.size => bail!(
            "--size {} is smaller than the existing file {path} ({}); cbootc does not shrink files",
            format_size(s),
            format_size(target.size)
        ),
        (TargetKind::File, Some(s)) => Ok(s),
    }
}

/// Space the root filesystem needs for an image whose repository takes
/// `repo_bytes` and whose `/var` holds `var_bytes`: both plus 10% and
/// 256 MiB for filesystem metadata, the journal and first-boot writes.
pub fn min_root_size(repo_bytes: u64, var_bytes: u64) -> u64 {
    let data = repo_bytes + var_bytes;
    data + data / 10 + 256 * MIB
}

/// Check the boot files fit the ESP with room for one more deployment
/// (an upgrade writes the new kernel before the old one is pruned).
pub fn check_esp(esp_size: u64, boot_bytes: u64) -> Result<()> {
    if esp_size < MIN_ESP_SIZE {
        bail!(
            "--esp-size {} is too small: the ESP needs at least {}",
            format_size(esp_size),
            format_size(MIN_ESP_SIZE)
        );
    }
    // FAT32 tables and directories take about 1% of the volume.
    let usable = esp_size - esp_size / 100 - MIB;
    let needed = 2 * boot_bytes;
    if needed > usable {
        bail!(
            "the ESP ({}) cannot hold this image's boot files twice ({} each; an upgrade needs room for two): use a larger --esp-size",
            format_size(esp_size),
            format_size(boot_bytes)
        );
    }
    Ok(())
}

/// The verity policy: `kernel_has_verity` says whether the running kernel
/// can enable fs-verity on `fs` (for ext4, `/sys/fs/ext4/features/verity`).
pub fn decide_verity(mode: VerityMode, fs: FsKind, kernel_has_verity: bool) -> Result<Verity> {
    match mode {
        VerityMode::Off => Ok(Verity::Optional),
        VerityMode::Auto if fs.supports_verity() && kernel_has_verity => Ok(Verity::Required),
        VerityMode::Auto => Ok(Verity::Optional),
        VerityMode::Required if !fs.supports_verity() => bail!(
            "--verity required: {fs} has no fs-verity support; use --filesystem ext4 or btrfs"
        ),
        VerityMode::Required if !kernel_has_verity => bail!(
            "--verity required: the running kernel cannot enable fs-verity on {fs} (no /sys/fs/{fs}/features/verity)"
        ),
        VerityMode::Required => Ok(Verity::Required),
    }
}

/// Whether the filesystem is made with its verity feature: always unless
/// `--verity off`, so that a system installed from a kernel without
/// fs-verity can still turn it on later.
pub fn mkfs_with_verity(mode: VerityMode, fs: FsKind) -> bool {
    mode != VerityMode::Off && fs.supports_verity()
}

/// Whether the running kernel supports fs-verity on `fs`, from sysfs.
pub fn kernel_has_verity(fs: FsKind) -> bool {
    match fs {
        FsKind::Ext4 => std::path::Path::new("/sys/fs/ext4/features/verity").exists(),
        FsKind::Btrfs => std::path::Path::new("/sys/fs/btrfs/features/verity").exists(),
        FsKind::Xfs => false,
    }
}

/// Check `--karg` values: one argument each, no newline, and none of the
/// arguments cbootc itself owns.
pub fn check_kargs(kargs: &[String]) -> Result<()> {
    for k in kargs {
        if k.is_empty() || k.contains(char::is_whitespace) {
            bail!("invalid --karg {k:?}: pass one kernel argument per --karg, without spaces");
        }
        let key = k.split('=').next().unwrap_or(k);
        if matches!(key, "root" | "composefs" | "composefs.digest" | "rw" | "ro") {
            bail!("--karg {k:?}: cbootc sets {key} itself");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn t(kind: TargetKind, size: u64) -> Target {
        Target { kind, size }
    }

    #[test]
    fn disk_sizes() {
        assert_eq!(
            disk_size(&t(TargetKind::Missing, 0), "d", Some(4 * G)).unwrap(),
            4 * G
        );
        assert_eq!(
            disk_size(&t(TargetKind::File, 2 * G), "d", Some(4 * G)).unwrap(),
            4 * G
        );
        assert_eq!(
            disk_size(&t(TargetKind::File, 2 * G), "d", None).unwrap(),
            2 * G
        );
        assert_eq!(
            disk_size(&t(TargetKind::BlockDevice, 8 * G), "d", None).unwrap(),
            8 * G
        );
        let e = disk_size(&t(TargetKind::Missing, 0), "d.raw", None).unwrap_err();
        assert!(e.to_string().contains("pass --size"), "{e}");
        let e = disk_size(&t(TargetKind::File, 8 * G), "d", Some(4 * G)).unwrap_err();
        assert!(e.to_string().contains("does not shrink"), "{e}");
        let e = disk_size(&t(TargetKind::BlockDevice, 8 * G), "/dev/x", Some(4 * G)).unwrap_err();
        assert!(e.to_string().contains("block device"), "{e}");
        assert!(disk_size(&t(TargetKind::File, 0), "d", None).is_err());
    }

    #[test]
    fn root_size_has_margin() {
        assert_eq!(min_root_size(0, 0), 256 * MIB);
        assert_eq!(min_root_size(1000 * MIB, 0), 1100 * MIB + 256 * MIB);
    }

    #[test]
    fn esp_checks() {
        check_esp(DEFAULT_ESP_SIZE, 100 * MIB).unwrap();
        let e = check_esp(DEFAULT_ESP_SIZE, 600 * MIB).unwrap_err();
        assert!(e.to_string().contains("--esp-size"), "{e}");
        assert!(check_esp(50 * MIB, MIB).is_err());
    }

    #[test]
    fn verity_policy() {
        use FsKind::*;
        use VerityMode::*;
        assert_eq!(decide_verity(Auto, Ext4, true).unwrap(), Verity::Required);
        assert_eq!(decide_verity(Auto, Ext4, false).unwrap(), Verity::Optional);
        assert_eq!(decide_verity(Auto, Xfs, true).unwrap(), Verity::Optional);
        assert_eq!(decide_verity(Off, Ext4, true).unwrap(), Verity::Optional);
        assert_eq!(
            decide_verity(Required, Ext4, true).unwrap(),
            Verity::Required
        );
        assert!(
            decide_verity(Required, Xfs, true)
                .unwrap_err()
                .to_string()
                .contains("xfs")
        );
        assert!(
            decide_verity(Required, Ext4, false)
                .unwrap_err()
                .to_string()
                .contains("kernel")
        );
        assert!(mkfs_with_verity(Auto, Ext4));
        assert!(!mkfs_with_verity(Off, Ext4));
        assert!(!mkfs_with_verity(Required, Xfs));
        assert_eq!("required".parse::<VerityMode>().unwrap(), Required);
        assert!("yes".parse::<VerityMode>().is_err());
    }

    #[test]
    fn karg_checks() {
        check_kargs(&["console=ttyS0".into(), "quiet".into()]).unwrap();
        for bad in ["", "a b", "root=/dev/sda", "composefs=abc", "rw"] {
            assert!(check_kargs(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
