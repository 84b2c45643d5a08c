//! cbootc's record of deployments: `state/cbootc/deployments.json`.
//!
//! Boot menus are generated from this record and never read back to decide
//! anything: the order of `deployments` *is* the boot order (the first is
//! the default), so rollback and pruning never depend on file names or
//! mtimes on the ESP.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::util::atomic;

/// The record format this cbootc writes and reads.
pub const FORMAT: u32 = 1;

/// Which bootloader the system boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    /// GRUB with BLS Type 1 entries and a cbootc-generated grub.cfg.
    Grub,
    /// systemd-boot booting one UKI per deployment.
    SystemdBoot,
}

impl fmt::Display for Bootloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bootloader::Grub => "GRUB",
            Bootloader::SystemdBoot => "systemd-boot",
        })
    }
}

/// Whether the kernel must find fs-verity on every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verity {
    /// No `?` on the composefs argument: boot fails without verity.
    Required,
    /// `?` on the composefs argument: verity used where present.
    Optional,
}

impl fmt::Display for Verity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verity::Required => "required",
            Verity::Optional => "optional",
        })
    }
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The bootloader installed on the ESP.
    pub bootloader: Bootloader,
    /// FAT volume id of the ESP, `ABCD-1234`.
    pub esp_uuid: String,
    /// Filesystem UUID of the root filesystem (`root=UUID=…`).
    pub root_uuid: String,
    /// fs-verity policy of the repository.
    pub verity: Verity,
    /// Whether the boot chain is Secure Boot signed (shim + signed GRUB, or
    /// systemd-boot and UKIs signed with the key in
    /// `/var/lib/cbootc/secureboot/`).
    #[serde(default)]
    pub secure_boot: bool,
    /// Extra kernel arguments for every entry (`--karg`).
    pub kargs: Vec<String>,
    /// Deployments in boot order: the first is the default.
    pub deployments: Vec<Deployment>,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Hex id of the boot image (the `composefs.digest=` value).
    pub id: String,
    /// The reference the image was pulled from.
    pub imgref: String,
    /// `sha256:…` of its manifest.
    pub manifest_digest: String,
    /// The image's OCI `created` time.
    pub created: Option<String>,
    /// When cbootc deployed it (RFC 3339; compare with
    /// [`Deployment::deployed_after`], not as strings).
    pub deployed_at: String,
    /// Menu title, from os-release.
    pub title: String,
    /// Version, from os-release.
    pub version: Option<String>,
    /// Kernel version booted.
    pub kver: String,
    /// Set when its trial boot did not complete and cbootc rolled back
    /// automatically; `upgrade` does not stage it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot_failed: bool,
}

impl Deployment {
    /// Whether this deployment was made no earlier than `other`, comparing
    /// `deployed_at` as times: records written with whole seconds and with
    /// fractions do not order correctly as strings ("27Z" > "27.5Z").
    pub fn deployed_after(&self, other: &Deployment) -> bool {
        let t = |d: &Deployment| chrono::DateTime::parse_from_rfc3339(&d.deployed_at).ok();
        t(self) >= t(other)
    }

    /// The record entry for a freshly deployed image.
    pub fn from_image(image: &crate::image::import::ImportedImage) -> Self {
        Deployment {
            id: crate::image::import::hex(&image.boot_id),
            imgref: image.imgref.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            created: image.created.clone(),
            // Sub-second: an install and an upgrade within one second must
            // still be ordered (see [`Deployment::deployed_after`]).
            deployed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            title: image.os_release.title(),
            version: image.os_release.version(),
            kver: image.kver(),
            boot_failed: false,
        }
    }
}

impl Record {
    /// Read the record at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let record: Record =
            serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))?;
        if record.format != FORMAT {
            bail!(
                "{} has format {}, this cbootc understands {FORMAT}",
                path.display(),
                record.format
            );
        }
        Ok(record)
    }

    /// Write the record atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut data = serde_json::to_vec_pretty(self).context("serialising the record")?;
        data.push(b'\n');
        atomic::write_file(path, &data)
    }

    /// Put deployment `id` first in the boot order; false if absent.
    pub fn move_to_front(&mut self, id: &str) -> bool {
        match self.deployments.iter().position(|d| d.id == id) {
            Some(pos) => {
                let d = self.deployments.remove(pos);
                self.deployments.insert(0, d);
                true
            }
            None => false,
        }
    }

    /// The deployment with boot image id `id`.
    pub fn find(&self, id: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            format: FORMAT,
            bootloader: Bootloader::Grub,
            esp_uuid: "ABCD-1234".into(),
            root_uuid: "0f0e0d0c-0000-4000-8000-000000000001".into(),
            verity: Verity::Optional,
            secure_boot: false,
            kargs: vec!["console=ttyS0".into()],
            deployments: vec![Deployment {
                id: "ab".repeat(64),
                imgref: "oci:/x:v1".into(),
                manifest_digest: "sha256:00".into(),
                created: None,
                deployed_at: "2026-11-22T00:00:00Z".into(),
                title: "Debian GNU/Linux 13 (trixie)".into(),
                version: Some("13".into()),
                kver: "6.12.0".into(),
                boot_failed: false,
            }],
        }
    }

    #[test]
    fn round_trip_and_find() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/cbootc/deployments.json");
        let r = sample();
        r.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"espUuid\": \"ABCD-1234\""), "{text}");
        assert!(text.contains("\"verity\": \"optional\""), "{text}");
        let back = Record::load(&p).unwrap();
        assert_eq!(back, r);
        assert!(back.find(&"ab".repeat(64)).is_some());
        assert!(back.find("cd").is_none());
    }

    #[test]
    fn newer_format_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let mut r = sample();
        r.format = 99;
        r.save(&p).unwrap();
        let e = Record::load(&p).unwrap_err().to_string();
        assert!(e.contains("format 99"), "{e}");
    }
}
