//! The ESP's content, staged in a directory before the FAT filesystem is
//! written (this build host cannot mount vfat, and a FAT image written in
//! one pass needs no mount at all).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::boot::secureboot::{KeyPair, Signer};
use crate::boot::{grub_efi, shim, systemd_boot};
use crate::deploy::record::{self, Record};
use crate::util::atomic;
use crate::util::command::Tools;

/// The removable-media boot path (UEFI 2.10 §3.5.1.1): firmware boots it
/// without any boot entry in NVRAM, which a disk image written on another
/// machine cannot have.
pub const REMOVABLE_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The Secure Boot certificate on the ESP, for enrolment from the
/// firmware's setup menu (Secure Boot → db → add from file).
pub const CERT_ON_ESP: &str = "EFI/BOOT/cbootc-db.cer";

/// What the bootloader is staged from.
pub struct Bootloader<'a> {
    /// The system's record (boot style, Secure Boot, ESP id).
    pub record: &'a Record,
    /// The image's root as mounted (or `/`).
    pub image_root: &'a Path,
    /// os-release `ID` (where distributions keep their signed GRUB).
    pub os_id: &'a str,
    /// Where `grub-mkstandalone` comes from.
    pub grub_tools: &'a dyn Tools,
    /// Where `ukify`/`sbsign` come from.
    pub efi_tools: &'a dyn Tools,
    /// The signing key (systemd-boot with Secure Boot).
    pub keys: Option<&'a KeyPair>,
    /// The staged ESP.
    pub esp: &'a Path,
}

/// Put the bootloader on the staged ESP: a GRUB built from the image's
/// GRUB; the distribution's signed shim + GRUB chain (Secure Boot); or the
/// image's systemd-boot, signed with the system's key under Secure Boot.
pub fn stage_bootloader(b: &Bootloader<'_>) -> Result<()> {
    let esp_uuid = &b.record.esp_uuid;
    match (b.record.bootloader, b.record.secure_boot) {
        (record::Bootloader::Grub, false) => {
            tracing::info!("building the GRUB EFI binary");
            let out = b.esp.join(REMOVABLE_PATH);
            fs::create_dir_all(out.parent().expect("has parent"))
                .with_context(|| format!("creating {}", out.display()))?;
            grub_efi::build_standalone(b.grub_tools, esp_uuid, &out)
        }
        (record::Bootloader::Grub, true) => {
            tracing::info!("installing the signed shim and GRUB from the image");
            let chain = shim::find(b.image_root, b.os_id)?;
            shim::install(&chain, b.esp, esp_uuid)?;
            Ok(())
        }
        (record::Bootloader::SystemdBoot, sb) => {
            tracing::info!("installing systemd-boot from the image");
            let signer = match (sb, b.keys) {
                (true, Some(k)) => Some(Signer::new(b.efi_tools, k)),
                (true, None) => anyhow::bail!("Secure Boot: no signing key"),
                (false, _) => None,
            };
            systemd_boot::install(
                b.image_root,
                b.esp,
                signer.as_ref().map(|s| s as &dyn systemd_boot::EfiSigner),
            )
        }
    }
}

/// Put the DER certificate on the ESP for enrolment.
pub fn stage_certificate(esp: &Path, keys: &KeyPair) -> Result<()> {
    let p = esp.join(CERT_ON_ESP);
    fs::create_dir_all(p.parent().expect("has parent"))?;
    atomic::write_file(&p, &keys.cert_der()?)
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
