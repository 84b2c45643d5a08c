//! The ESP's content, staged in a directory before the FAT filesystem is
//! written (this build host cannot mount vfat, and a FAT image written in
//! one pass needs no mount at all).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::boot::grub_efi;
use crate::image::import::Kernel;
use crate::repo::Repo;
use crate::util::command::Tools;

/// The removable-media boot path (UEFI 2.10 §3.5.1.1): firmware boots it
/// without any boot entry in NVRAM, which a disk image written on another
/// machine cannot have.
pub const REMOVABLE_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// Build the GRUB binary into `esp`.
pub fn stage_grub(tools: &dyn Tools, esp: &Path, esp_uuid: &str) -> Result<()> {
    let out = esp.join(REMOVABLE_PATH);
    fs::create_dir_all(out.parent().expect("has parent"))
        .with_context(|| format!("creating {}", out.display()))?;
    grub_efi::build_standalone(tools, esp_uuid, &out)
}

/// Copy a deployment's kernel and initramfs into `esp`.
pub fn stage_kernel(repo: &Repo, esp: &Path, id: &str, kernel: &Kernel) -> Result<()> {
    crate::deploy::boot_files::install_kernel(repo, esp, id, kernel)
}

/// Bytes under `dir` (for the ESP space check).
pub fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let md = e.metadata()?;
        total += if md.is_dir() {
            tree_size(&e.path())?
        } else {
            md.len()
        };
    }
    Ok(total)
}
