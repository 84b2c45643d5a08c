//! Creating the root filesystem with the distribution's `mkfs.<type>`.
//!
//! The filesystem is made by the image's own tools where possible (see
//! [`crate::util::command::Tools`]) so that its on-disk features are ones the
//! image's kernel and fsck support. The label and UUID are given explicitly
//! because the boot entries and fstab refer to the filesystem by them.
//!
//! fs-verity (which composefs uses to check object files) needs support in
//! the filesystem: ext4 has it behind the `verity` feature flag (set at mkfs
//! time, e2fsprogs ≥ 1.45), btrfs always has it (Linux ≥ 5.15), XFS has none.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::util::command::{Tools, run_command};

/// The filesystems cbootc can create for the root partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
}

impl FsKind {
    /// The name used by `mount -t`, `mkfs.<name>` and blkid.
    pub fn as_str(&self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
        }
    }

    /// Whether cbootc can create this filesystem with fs-verity support
    /// (ext4: `-O verity`; btrfs: native; xfs: no).
    pub fn supports_verity(&self) -> bool {
        match self {
            FsKind::Ext4 | FsKind::Btrfs => true,
            FsKind::Xfs => false,
        }
    }

    /// The longest label the filesystem stores, in bytes: ext4's
    /// `s_volume_name[16]`, XFS's `sb_fname[12]`, btrfs's
    /// `BTRFS_LABEL_SIZE` (256, including the terminating NUL).
    pub fn max_label_len(&self) -> usize {
        match self {
            FsKind::Ext4 => 16,
            FsKind::Xfs => 12,
            FsKind::Btrfs => 255,
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ext4" => Ok(FsKind::Ext4),
            "xfs" => Ok(FsKind::Xfs),
            "btrfs" => Ok(FsKind::Btrfs),
            _ => bail!("unsupported filesystem type {s:?}: expected ext4, xfs or btrfs"),
        }
    }
}

/// The `mkfs.<kind>` arguments (without the program name).
fn mkfs_args(
    kind: FsKind,
    device: &Path,
    label: &str,
    uuid: &uuid::Uuid,
    verity: bool,
) -> Vec<String> {
    let uuid = uuid.hyphenated().to_string();
    let mut args: Vec<String> = match kind {
        // 4 KiB blocks always: mke2fs picks 1 KiB blocks for small
        // filesystems (the "small" type in mke2fs.conf), and fs-verity on
        // ext4 requires the block size to equal the page size, or `fsverity
        // enable` fails with "Unsupported log_blocksize".
        FsKind::Ext4 => ["-F", "-q", "-b", "4096", "-L", label, "-U", &uuid]
            .map(String::from)
            .to_vec(),
        FsKind::Xfs => vec![
            "-f".into(),
            "-q".into(),
            "-L".into(),
            label.into(),
            "-m".into(),
            format!("uuid={uuid}"),
        ],
        FsKind::Btrfs => ["-f", "-q", "-L", label, "-U", &uuid]
            .map(String::from)
            .to_vec(),
    };
    if verity && kind == FsKind::Ext4 {
        args.extend(["-O".into(), "verity".into()]);
    }
    args.push(device.to_string_lossy().into_owned());
    args
}

/// Create a `kind` filesystem on `device` with `label` and `uuid`, running
/// `mkfs.<kind>` from `tools`. With `verity`, the filesystem supports
/// fs-verity (an error for XFS).
pub fn mkfs(
    tools: &dyn Tools,
    kind: FsKind,
    device: &Path,
    label: &str,
    uuid: &uuid::Uuid,
    verity: bool,
) -> Result<()> {
    let shown = device.display();
    if verity && !kind.supports_verity() {
        bail!(
            "cannot create {kind} on {shown} with fs-verity: {kind} does not support it (use ext4 or btrfs)"
        );
    }
    // mke2fs only warns and truncates an over-long label, after which
    // `LABEL=` lookups silently fail to match: refuse instead.
    if label.len() > kind.max_label_len() {
        bail!(
            "cannot create {kind} on {shown}: label {label:?} is {} bytes, {kind} allows at most {}",
            label.len(),
            kind.max_label_len()
        );
    }
    if label.contains('\0') {
        bail!("cannot create {kind} on {shown}: the label contains a NUL byte");
    }
    let program = format!("mkfs.{kind}");
    let mut cmd = tools.command(&program)?;
    cmd.args(mkfs_args(kind, device, label, uuid, verity));
    run_command(&mut cmd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testutil::{ScratchDisk, blkid, sh};
    use crate::util::command::HostTools;

    const MIB: u64 = 1 << 20;

    #[test]
    fn parse_and_display() {
        for kind in [FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs] {
            assert_eq!(kind.to_string().parse::<FsKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let msg = "vfat".parse::<FsKind>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "unsupported filesystem type \"vfat\": expected ext4, xfs or btrfs"
        );
        assert!("EXT4".parse::<FsKind>().is_err());
        assert!(FsKind::Ext4.supports_verity());
        assert!(FsKind::Btrfs.supports_verity());
        assert!(!FsKind::Xfs.supports_verity());
    }

    #[test]
    fn argument_lists() {
        let u = uuid::uuid!("0f3d6a5e-2b8f-4d38-9d6c-3f1a6b2c4e5d");
        let dev = Path::new("/dev/loop3");
        assert_eq!(
            mkfs_args(FsKind::Ext4, dev, "root", &u, true).join(" "),
            "-F -q -b 4096 -L root -U 0f3d6a5e-2b8f-4d38-9d6c-3f1a6b2c4e5d -O verity /dev/loop3"
        );
        assert_eq!(
            mkfs_args(FsKind::Xfs, dev, "root", &u, false).join(" "),
            "-f -q -L root -m uuid=0f3d6a5e-2b8f-4d38-9d6c-3f1a6b2c4e5d /dev/loop3"
        );
        assert_eq!(
            mkfs_args(FsKind::Btrfs, dev, "root", &u, true).join(" "),
            "-f -q -L root -U 0f3d6a5e-2b8f-4d38-9d6c-3f1a6b2c4e5d /dev/loop3"
        );
    }

    fn check(kind: FsKind, size: u64, verity: bool) -> ScratchDisk {
        let disk = ScratchDisk::new(size);
        let tools = HostTools::new().unwrap();
        let uuid = uuid::Uuid::new_v4();
        let label = format!("{kind}-root");
        mkfs(&tools, kind, disk.dev(), &label, &uuid, verity).unwrap();
        let probe = blkid(disk.dev());
        assert_eq!(
            probe.get("TYPE").map(String::as_str),
            Some(kind.as_str()),
            "{probe:?}"
        );
        assert_eq!(probe.get("LABEL"), Some(&label), "{probe:?}");
        assert_eq!(
            probe.get("UUID"),
            Some(&uuid.hyphenated().to_string()),
            "{probe:?}"
        );
        disk
    }

    fn ext4_features(dev: &Path) -> (String, String) {
        let out = sh(&format!("dumpe2fs -h {} 2>/dev/null", dev.display()));
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {out}"))
                .trim()
                .to_string()
        };
        (field("Filesystem features:"), field("Block size:"))
    }

    #[test]
    fn ext4_with_verity_and_4k_blocks() {
        // 64 MiB: small enough that mke2fs would pick 1 KiB blocks itself.
        let disk = check(FsKind::Ext4, 64 * MIB, true);
        let (features, block_size) = ext4_features(disk.dev());
        assert!(
            features.split_whitespace().any(|f| f == "verity"),
            "{features}"
        );
        assert_eq!(block_size, "4096");
    }

    #[test]
    fn ext4_without_verity() {
        let disk = check(FsKind::Ext4, 64 * MIB, false);
        let (features, _) = ext4_features(disk.dev());
        assert!(
            !features.split_whitespace().any(|f| f == "verity"),
            "{features}"
        );
    }

    #[test]
    fn xfs() {
        // mkfs.xfs refuses filesystems under 300 MiB.
        check(FsKind::Xfs, 320 * MIB, false);
    }

    #[test]
    fn btrfs() {
        check(FsKind::Btrfs, 256 * MIB, true);
    }

    #[test]
    fn refusals() {
        let tools = HostTools::new().unwrap();
        let dev = Path::new("/dev/cbootc-none");
        let u = uuid::Uuid::new_v4();
        let msg = mkfs(&tools, FsKind::Xfs, dev, "root", &u, true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("xfs does not support it"), "{msg}");
        assert!(msg.contains("/dev/cbootc-none"), "{msg}");
        let msg = mkfs(&tools, FsKind::Ext4, dev, "seventeen-chars-x", &u, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is 17 bytes, ext4 allows at most 16"), "{msg}");
        assert!(mkfs(&tools, FsKind::Xfs, dev, "thirteen-char", &u, false).is_err());
        // A failing mkfs names the program and the device.
        let msg = format!(
            "{:#}",
            mkfs(&tools, FsKind::Ext4, dev, "root", &u, false).unwrap_err()
        );
        assert!(msg.contains("mkfs.ext4"), "{msg}");
        assert!(msg.contains("/dev/cbootc-none"), "{msg}");
    }
}
