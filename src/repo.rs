//! The composefs repository: where images live on the root filesystem.
//!
//! cbootc uses SHA-512 object ids, like bootc and `cfsctl`: the id of a
//! bootable image (and so the `composefs.digest=` kernel argument and the
//! digest a sealed UKI embeds) is then the same whichever of these tools
//! computed it, and `bootc container compute-composefs-digest` output can be
//! checked against cbootc's.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use composefs::fsverity::{Algorithm, EnableVerityError, Sha512HashValue};
use composefs::repository::{Repository, RepositoryConfig};
use rustix::fs::CWD;

/// The object id type: SHA-512 fs-verity digests (128 hex characters).
pub type ObjectId = Sha512HashValue;

/// A composefs repository with SHA-512 ids.
pub type Repo = Repository<ObjectId>;

/// The repository's directory name under the root filesystem, where
/// composefs-setup-root looks for it (`/sysroot/composefs`).
pub const REPO_DIR: &str = "composefs";

/// The repository tag that keeps deployment `id`'s image alive: garbage
/// collection only keeps what a tag reaches.
pub fn deployment_tag(id: &str) -> String {
    format!("cbootc-deployment:{id}")
}

/// Create a repository at `path`. `verity` makes fs-verity mandatory for
/// every object (the filesystem and kernel must support it); otherwise it is
/// optional, though still enabled where the filesystem supports it.
pub fn init(path: &Path, verity: bool) -> Result<Arc<Repo>> {
    let mut config = RepositoryConfig::new(Algorithm::SHA512);
    if !verity {
        config = config.set_insecure();
    }
    let (repo, _created) = Repo::init_path(CWD, path, config)
        .with_context(|| format!("creating composefs repository {}", path.display()))?;
    Ok(Arc::new(repo))
}

/// Open an existing repository.
pub fn open(path: &Path) -> Result<Arc<Repo>> {
    let repo = Repo::open_path(CWD, path)
        .with_context(|| format!("opening composefs repository {}", path.display()))?;
    Ok(Arc::new(repo))
}

/// Whether fs-verity can really be enabled on files in `dir`: the
/// filesystem must have the feature *and* the running kernel must support
/// it, which a filesystem feature flag alone does not tell (this build
/// machine's kernel, for one, has no fs-verity).
pub fn verity_works_in(dir: &Path) -> Result<bool> {
    let probe = tempfile::Builder::new()
        .prefix(".cbootc-verity-probe-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a probe file in {}", dir.display()))?;
    probe
        .as_file()
        .write_all(&[0u8; 4096])
        .and_then(|()| probe.as_file().sync_all())
        .context("writing the fs-verity probe file")?;
    // FS_IOC_ENABLE_VERITY refuses a file open for writing (ETXTBSY).
    let ro = OpenOptions::new()
        .read(true)
        .open(probe.path())
        .context("reopening the fs-verity probe file")?;
    let writer = probe.into_temp_path();
    let result = composefs::fsverity::enable_verity_raw::<ObjectId>(&ro);
    drop(ro);
    drop(writer);
    match result {
        Ok(()) => Ok(true),
        Err(EnableVerityError::FilesystemNotSupported) => Ok(false),
        Err(EnableVerityError::FileOpenedForWrite) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e)).context("probing fs-verity support"),
    }
}

/// Enable fs-verity on every object in the repository at `path` that lacks
/// it, if this filesystem and kernel can. Returns how many were enabled.
///
/// Why: in a repository where verity is optional, composefs still enables
/// verity on files it writes where it can, and it mounts an image *whose
/// image file has verity* with overlayfs `verity=require` (composefs 0.9.4
/// `Repository::mount_with_options`). A system installed from a kernel
/// without fs-verity has objects without it; the first upgrade pulled by a
/// kernel with fs-verity writes a new image file with verity that shares
/// those objects, and the kernel then refuses them at boot ("lower file has
/// no fs-verity digest"). Giving every object verity makes such an image
/// bootable and the whole repository verifiable from then on.
pub fn enable_verity_everywhere(path: &Path) -> Result<u64> {
    let objects = path.join("objects");
    if !verity_works_in(&objects)? {
        return Ok(0);
    }
    let mut enabled = 0;
    for dir in
        std::fs::read_dir(&objects).with_context(|| format!("reading {}", objects.display()))?
    {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            if !file.file_type()?.is_file() || file.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let f = std::fs::File::open(file.path())
                .with_context(|| format!("opening {}", file.path().display()))?;
            match composefs::fsverity::enable_verity_raw::<ObjectId>(&f) {
                Ok(()) => enabled += 1,
                Err(EnableVerityError::AlreadyEnabled) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!("enabling fs-verity on {}", file.path().display())
                    });
                }
            }
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPO_DIR);
        let repo = init(&path, false).unwrap();
        assert!(repo.is_insecure());
        drop(repo);
        let meta = std::fs::read_to_string(path.join("meta.json")).unwrap();
        assert!(meta.contains("sha512"), "{meta}");
        assert!(open(&path).is_ok());
    }

    #[test]
    fn open_missing_fails_with_path() {
        let err = open(Path::new("/nonexistent/cbootc-repo")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/cbootc-repo"));
    }

    #[test]
    fn verity_probe_answers() {
        // The answer depends on the kernel and filesystem; the probe must
        // answer without error and leave nothing behind.
        let dir = tempfile::tempdir().unwrap();
        verity_works_in(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
