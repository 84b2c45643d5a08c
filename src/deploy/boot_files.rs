//! A deployment's boot files on the ESP, under `cbootc/<id>/`: the kernel
//! and initramfs (GRUB), or one UKI (systemd-boot) — built from the image's
//! kernel with the image's `ukify`, or the sealed UKI the image ships
//! (checked to name this image), signed with the system's key under Secure
//! Boot.
//!
//! The directory is written under a temporary name and renamed into place,
//! so a crash never leaves a half-written kernel under a name a boot entry
//! could point to.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use composefs::tree::RegularFile;

use crate::boot::menu;
use crate::boot::secureboot::{self, KeyPair};
use crate::boot::uki::{self, UkiInput};
use crate::deploy::record::{Bootloader, Record};
use crate::image::import::ImportedImage;
use crate::repo::{ObjectId, Repo};
use crate::util::atomic;
use crate::util::command::Tools;

/// The file name of a deployment's UKI in its directory.
pub const UKI_NAME: &str = "uki.efi";

/// The directory of deployment `id` under the ESP at `esp`.
pub fn kernel_dir(esp: &Path, id: &str) -> PathBuf {
    menu::esp_path(esp, &menu::kernel_dir(id))
}

/// What building boot files may need beyond the image: the image's own
/// programs (`ukify`, `sbsign`) and the Secure Boot key.
#[derive(Clone, Copy)]
pub struct Builders<'a> {
    /// Programs of the image being deployed.
    pub tools: Option<&'a dyn Tools>,
    /// The key that signs UKIs (systemd-boot with Secure Boot).
    pub keys: Option<&'a KeyPair>,
}

/// Write the boot files of `image`, deployed as `id` under `record`'s boot
/// style, into the ESP at `esp`.
pub fn install(
    record: &Record,
    id: &str,
    repo: &Repo,
    esp: &Path,
    image: &ImportedImage,
    b: Builders<'_>,
) -> Result<()> {
    let dir = kernel_dir(esp, id);
    let parent = dir.parent().expect("kernel dir has a parent");
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{id}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    match record.bootloader {
        Bootloader::Grub => {
            let kernel = image.require_kernel()?;
            copy_out(repo, &kernel.vmlinuz, &tmp.join("vmlinuz"))?;
            copy_out(repo, &kernel.initramfs, &tmp.join("initramfs.img"))?;
        }
        Bootloader::SystemdBoot => write_uki(record, id, repo, image, b, &tmp.join(UKI_NAME))?,
    }
    atomic::sync_dir(&tmp)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("renaming into {}", dir.display()))?;
    atomic::sync_dir(parent)
}

fn write_uki(
    record: &Record,
    id: &str,
    repo: &Repo,
    image: &ImportedImage,
    b: Builders<'_>,
    out: &Path,
) -> Result<()> {
    if let Some(sealed) = &image.sealed_uki {
        let data =
            composefs::fs::read_file(&sealed.file, repo).context("reading the image's UKI")?;
        uki::check_sealed(&data, id).with_context(|| {
            format!(
                "the UKI shipped in {} does not seal this image",
                image.imgref
            )
        })?;
        fs::write(out, &data).with_context(|| format!("writing {}", out.display()))?;
        tracing::info!("using the sealed UKI shipped in the image");
    } else {
        let tools = b.tools.context(
            "building a UKI needs the image's ukify, and the image could not be mounted",
        )?;
        let kernel = image.require_kernel()?;
        let work = tempfile::tempdir_in(out.parent().expect("has parent"))
            .context("creating a work directory for the UKI")?;
        let (vmlinuz, initramfs) = (
            work.path().join("vmlinuz"),
            work.path().join("initramfs.img"),
        );
        copy_out(repo, &kernel.vmlinuz, &vmlinuz)?;
        copy_out(repo, &kernel.initramfs, &initramfs)?;
        let cmdline = menu::cmdline(record, id)?;
        tracing::info!("building the UKI with the image's ukify");
        uki::build(
            tools,
            &UkiInput {
                kernel: &vmlinuz,
                initramfs: &initramfs,
                cmdline: &cmdline,
                os_release: &image.os_release_text,
                uname: &kernel.kver,
            },
            out,
        )?;
    }
    if record.secure_boot {
        let keys = b.keys.context("Secure Boot: no signing key")?;
        let tools = b
            .tools
            .context("signing needs the image's sbsign, and the image could not be mounted")?;
        let data = fs::read(out)?;
        if secureboot::signature_count(&data)? == 0 {
            let signed = out.with_extension("signed");
            secureboot::sign(tools, keys, out, &signed)?;
            fs::rename(&signed, out)?;
        }
        secureboot::verify(tools, &keys.cert_pem()?, out).with_context(|| {
            format!(
                "the UKI of {} is not signed by this system's key",
                image.imgref
            )
        })?;
    }
    File::open(out)
        .and_then(|f| f.sync_all())
        .context("syncing the UKI")
}

fn copy_out(repo: &Repo, file: &RegularFile<ObjectId>, dest: &Path) -> Result<()> {
    let mut out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    match file {
        RegularFile::Inline(data) => io::Write::write_all(&mut out, data)
            .with_context(|| format!("writing {}", dest.display()))?,
        RegularFile::External(id, _) | RegularFile::ExternalNoVerity(id, _) => {
            let mut src = File::from(repo.open_object(id).context("opening a boot file")?);
            io::copy(&mut src, &mut out).with_context(|| format!("writing {}", dest.display()))?;
        }
        RegularFile::Sparse(size) => out.set_len(*size)?,
    }
    out.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))
}

/// Bytes the kernel (or UKI) files of `image` need on the ESP.
pub fn needed_bytes(image: &ImportedImage) -> u64 {
    image.boot_size() + (1 << 20)
}

/// Ids of the deployment directories present on the ESP.
pub fn present(esp: &Path) -> Result<Vec<String>> {
    let parent = kernel_dir(esp, "x");
    let parent = parent.parent().expect("has parent");
    if !parent.exists() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for e in fs::read_dir(parent).with_context(|| format!("reading {}", parent.display()))? {
        ids.push(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(ids)
}
