//! A deployment's kernel and initramfs on the ESP (`cbootc/<id>/`).
//!
//! The directory is written under a temporary name and renamed into place,
//! so a crash never leaves a half-copied kernel under a name a boot entry
//! could point to.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use composefs::tree::RegularFile;

use crate::boot::menu;
use crate::image::import::Kernel;
use crate::repo::{ObjectId, Repo};
use crate::util::atomic;

/// The directory of deployment `id` under the ESP at `esp`.
pub fn kernel_dir(esp: &Path, id: &str) -> PathBuf {
    menu::esp_path(esp, &menu::kernel_dir(id))
}

/// Copy `kernel` for deployment `id` into the ESP at `esp`.
pub fn install_kernel(repo: &Repo, esp: &Path, id: &str, kernel: &Kernel) -> Result<()> {
    let dir = kernel_dir(esp, id);
    let parent = dir.parent().expect("kernel dir has a parent");
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{id}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    copy_out(repo, &kernel.vmlinuz, &tmp.join("vmlinuz"))?;
    copy_out(repo, &kernel.initramfs, &tmp.join("initramfs.img"))?;
    atomic::sync_dir(&tmp)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("renaming into {}", dir.display()))?;
    atomic::sync_dir(parent)
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

/// Ids of the kernel directories present on the ESP.
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
