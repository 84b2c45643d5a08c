//! Populating the new root filesystem: the repository, the deployment's
//! state directories, the shared `/var`, the tracked-image config and the
//! ESP mount, and cbootc's record.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::deploy::config::{Config, ImageConfig, PruneConfig};
use crate::deploy::record::Record;
use crate::deploy::state::StateDirs;
use crate::image::extract;
use crate::image::import::{self, ImportedImage};
use crate::repo::{self, Repo};
use crate::util::atomic;

/// The systemd unit that mounts the ESP at `/boot`, written into the
/// deployment's `/etc` (not `/etc/fstab`, which the image may own).
/// `WantedBy=` rather than `RequiredBy=`: a broken ESP must not keep the
/// system from booting; cbootc refuses to upgrade while `/boot` is missing.
pub fn boot_mount_unit(esp_uuid: &str) -> String {
    format!(
        "# Written by cbootc install: the EFI system partition, which holds the
# kernels, boot entries and GRUB configuration cbootc manages.
[Unit]
Description=EFI System Partition (cbootc)
Before=local-fs.target

[Mount]
What=/dev/disk/by-uuid/{esp_uuid}
Where=/boot
Type=vfat
Options=umask=0077,shortname=winnt

[Install]
WantedBy=local-fs.target
"
    )
}

/// Import the image into the repository on the new root and check the
/// result is the image that was checked in staging.
pub fn import_into(root: &Path, verity: bool, staged: &ImportedImage) -> Result<Arc<Repo>> {
    let dirs = StateDirs::new(root);
    let repo = repo::init(&dirs.repo(), verity)?;
    let imported = import::import(&repo, &staged.imgref)?;
    if imported.boot_id != staged.boot_id {
        bail!(
            "{} changed while installing (image id {} became {}); run the install again",
            staged.imgref,
            import::hex(&staged.boot_id),
            import::hex(&imported.boot_id)
        );
    }
    // Name the image in the repository so garbage collection keeps it.
    composefs_oci::tag_image(
        &repo,
        &imported.manifest_digest.parse()?,
        &repo::deployment_tag(&import::hex(&imported.boot_id)),
    )
    .context("tagging the deployed image")?;
    Ok(repo)
}

/// Create the deployment state, the shared var and config.
pub fn create_state(
    root: &Path,
    repo: &Repo,
    image: &ImportedImage,
    tracked_ref: &str,
    esp_uuid: &str,
) -> Result<()> {
    let dirs = StateDirs::new(root);
    let id = import::hex(&image.boot_id);
    let var = dirs.ensure_shared_var()?;
    let img = composefs_oci::OciImage::open(repo, &image.manifest_digest.parse()?, None)?;
    let fs_tree = img.read_filesystem(repo, false)?;
    let stats = extract::extract_dir(repo, &fs_tree, "/var", &var)?;
    tracing::info!(
        "populated /var from the image: {} directories, {} files",
        stats.dirs,
        stats.files
    );
    Config {
        image: ImageConfig {
            reference: tracked_ref.to_string(),
        },
        prune: PruneConfig::default(),
    }
    .save(&dirs.config())?;
    dirs.create_deployment(&id)?;

    let units = dirs.etc_upper(&id).join("systemd/system");
    let wants = units.join("local-fs.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    atomic::write_file(
        &units.join("boot.mount"),
        boot_mount_unit(esp_uuid).as_bytes(),
    )?;
    atomic::replace_symlink(Path::new("../boot.mount"), &wants.join("boot.mount"))?;
    Ok(())
}

/// Save the record on the root filesystem.
pub fn save_record(root: &Path, record: &Record) -> Result<()> {
    record.save(&StateDirs::new(root).record())
}
