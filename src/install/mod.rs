//! `install to-disk`: from an image to a bootable disk.
//!
//! Everything that can refuse is checked before the target is touched:
//! arguments, the target's state, the image (imported into a staging
//! repository, checked for bootability and measured), the disk size, and
//! the GRUB binary (built from the image's own GRUB into a staging ESP). Only
//! then is the disk partitioned and written; see [`to_disk`].

mod esp;
pub mod plan;
mod root_fs;
mod source;
mod to_disk;

use std::path::PathBuf;

pub use plan::VerityMode;
pub use to_disk::to_disk;

use crate::disk::mkfs::FsKind;

/// Options of `install to-disk`.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Block device or disk image file.
    pub device: PathBuf,
    /// Size for a disk image file.
    pub size: Option<u64>,
    /// The image to install; `None` = the running container's image.
    pub source: Option<String>,
    /// The reference the installed system tracks.
    pub target_imgref: Option<String>,
    /// Root filesystem type.
    pub filesystem: FsKind,
    /// Overwrite existing partition tables and filesystems.
    pub wipe: bool,
    /// Extra kernel arguments.
    pub kargs: Vec<String>,
    /// fs-verity policy.
    pub verity: VerityMode,
    /// ESP size in bytes.
    pub esp_size: u64,
    /// Where `/run/.containerenv` is (tests point it elsewhere).
    pub containerenv: PathBuf,
    /// systemd-boot with one UKI per deployment instead of GRUB.
    pub uki: bool,
    /// A Secure Boot signed chain: shim + signed GRUB, or (with `uki`)
    /// systemd-boot and UKIs signed with `sb_key`/`sb_cert` or a new key.
    pub secure_boot: bool,
    /// PEM private key for signing (with `uki` and `secure_boot`).
    pub sb_key: Option<PathBuf>,
    /// PEM certificate of `sb_key`.
    pub sb_cert: Option<PathBuf>,
}

/// What an installation produced.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Hex id of the deployed boot image.
    pub image_id: String,
    /// The tracked reference.
    pub tracked_ref: String,
    /// fs-verity policy in force.
    pub verity: crate::deploy::record::Verity,
    /// The bootloader installed.
    pub bootloader: crate::deploy::record::Bootloader,
    /// Whether the boot chain is Secure Boot signed.
    pub secure_boot: bool,
}
