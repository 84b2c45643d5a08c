//! Adding a deployment to a booted host (`upgrade`, `switch`).
//!
//! The steps are ordered so that a crash at any point leaves the booted
//! deployment the default and the boot menu valid:
//!
//! 1. the image is already in the repository (imported by the caller);
//! 2. checks that change nothing: `/etc` conflicts, ESP space;
//! 3. the image is tagged (a GC root), its kernel copied to the ESP, its
//!    `state/deploy/<id>` created with `/etc` carried forward — all under
//!    names nothing boots yet;
//! 4. the record is saved with the new deployment first (one atomic rename);
//! 5. the menu is regenerated from the record (each file atomically), and
//!    the first boot of the new deployment is made a trial ([`trial`], for
//!    GRUB and systemd-boot alike).
//!
//! A crash between 4 and 5 leaves the old menu in place; the next cbootc
//! command regenerates it from the record. Leftovers of a crash before 4 are
//! removed by pruning (they are in no record).

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::boot_files;
use super::etc_merge;
use super::trial;
use crate::boot::secureboot::KeyPair;
use crate::deploy::record::Bootloader;
use crate::host::Host;
use crate::image::import::{self, ImportedImage};
use crate::image::tools::ImageTools;
use crate::repo::Repo;
use crate::util::size::format_size;

/// What [`stage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// The image is the booted deployment: nothing changed.
    AlreadyBooted,
    /// The image is already the default for the next boot.
    AlreadyStaged,
    /// The image failed its trial boot here before; it is not staged again.
    PreviouslyFailed,
    /// The image is an older deployment still on the system (one the user
    /// rolled back from): `upgrade` leaves it, `switch` stages it.
    AlreadyDeployed,
    /// A new deployment is the default for the next boot.
    New {
        /// Its id.
        id: String,
        /// What the `/etc` carry-forward copied.
        etc: etc_merge::MergeReport,
    },
}

/// Whether [`stage`] may re-stage an image that is already a (non-default)
/// deployment here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// `upgrade`: leave it. After a rollback the tracked image is still the
    /// one rolled back from; re-staging it daily would undo the user's
    /// rollback at the next reboot.
    Leave,
    /// `switch`: the user asked for this image explicitly.
    Restage,
}

/// Make `image` (already in `repo`) the default deployment for the next
/// boot, keeping the booted one as rollback.
pub fn stage(
    host: &mut Host,
    repo: &Arc<Repo>,
    image: &ImportedImage,
    known: Known,
) -> Result<Staged> {
    let id = import::hex(&image.boot_id);
    if id == host.booted {
        return Ok(Staged::AlreadyBooted);
    }
    if host.record.deployments.first().is_some_and(|d| d.id == id) {
        return Ok(Staged::AlreadyStaged);
    }
    if host.record.find(&id).is_some_and(|d| d.boot_failed) {
        return Ok(Staged::PreviouslyFailed);
    }
    if known == Known::Leave && host.record.find(&id).is_some() {
        return Ok(Staged::AlreadyDeployed);
    }
    host.check_esp()?;

    // Checks that change nothing.
    let booted_upper = host.state.etc_upper(&host.booted);
    let new_tree = composefs_oci::OciImage::open(repo, &image.manifest_digest.parse()?, None)?
        .read_filesystem(repo, false)
        .context("reading the new image")?;
    let conflicts = etc_merge::conflicts(&booted_upper, &new_tree)?;
    if !conflicts.is_empty() {
        bail!(
            "cannot carry /etc into the new deployment: {}; resolve these (move or remove them) and run the upgrade again",
            etc_merge::describe(&conflicts)
        );
    }
    drop(new_tree);
    let needed = boot_files::needed_bytes(image);
    let free = free_bytes(host.esp())?;
    if free < needed {
        bail!(
            "{} (the ESP) has {} free and the new kernel and initramfs need {}; free space there, e.g. lower [prune] keep in {} and run `cbootc upgrade` again",
            host.esp().display(),
            format_size(free),
            format_size(needed),
            host.state.config().display()
        );
    }

    // Written under names nothing boots yet.
    composefs_oci::tag_image(
        repo,
        &image.manifest_digest.parse()?,
        &crate::repo::deployment_tag(&id),
    )
    .context("tagging the new image")?;
    write_boot_files(host, repo, image, &id)?;
    if host.state.deployment(&id).exists() {
        // A deployment of this image existed before (e.g. switching back):
        // it is made afresh from the booted /etc.
        std::fs::remove_dir_all(host.state.deployment(&id))
            .with_context(|| format!("removing the old state of {}", &id[..12]))?;
    }
    host.state.create_deployment(&id)?;
    let etc = etc_merge::carry_forward(
        &booted_upper,
        &host.state.etc_upper(&id),
        Some(&host.paths.etc),
    )?;

    // The switch: the record, then the menu.
    let entry = crate::deploy::record::Deployment::from_image(image);
    host.record.deployments.retain(|d| d.id != id);
    host.record.move_to_front(&host.booted);
    host.record.deployments.insert(0, entry);
    host.record.save(&host.state.record())?;
    // The firmware's LoaderEntryDefault would override the new menu; gone
    // first, the old menu (still naming the booted deployment) applies.
    host.sync_firmware_default()?;
    trial::start(host)?;
    Ok(Staged::New { id, etc })
}

/// The new deployment's boot files; a UKI is built with the *new* image's
/// own ukify and stub (mounted from the repository), and signed with the
/// system's key under Secure Boot.
fn write_boot_files(host: &Host, repo: &Arc<Repo>, image: &ImportedImage, id: &str) -> Result<()> {
    let record = &host.record;
    let needs_tools = record.bootloader == Bootloader::SystemdBoot;
    let tools = if needs_tools {
        Some(
            ImageTools::mount(repo, &image.full_id)
                .context("mounting the new image to run its ukify")?,
        )
    } else {
        None
    };
    let keys = if record.secure_boot && needs_tools {
        let (key, cert, _) = host.state.secureboot_files();
        Some(KeyPair::load(&key, &cert).context("loading this system's Secure Boot key")?)
    } else {
        None
    };
    let b = boot_files::Builders {
        tools: tools
            .as_ref()
            .map(|t| t as &dyn crate::util::command::Tools),
        keys: keys.as_ref(),
    };
    boot_files::install(record, id, repo, host.esp(), image, b)?;
    if let Some(t) = tools {
        t.close()?;
    }
    Ok(())
}

/// Re-copy the booted `/etc` changes into the staged deployment: run at
/// shutdown (`cbootc-finalize.service`) so that edits made after `upgrade`
/// and before the reboot are not lost.
pub fn finalize(host: &Host) -> Result<Option<String>> {
    let Some(first) = host.record.deployments.first() else {
        return Ok(None);
    };
    let booted = host.record.find(&host.booted);
    if first.id == host.booted || booted.is_some_and(|b| !first.deployed_after(b)) {
        // Nothing staged (or a rollback is queued: an older deployment keeps
        // its own /etc, as it was).
        return Ok(None);
    }
    etc_merge::carry_forward(
        &host.state.etc_upper(&host.booted),
        &host.state.etc_upper(&first.id),
        Some(&host.paths.etc),
    )?;
    Ok(Some(first.id.clone()))
}

/// Free bytes for an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &std::path::Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(st.f_bavail * st.f_frsize)
}
