//! The deployment directories on the root filesystem.
//!
//! The layout is the one composefs-setup-root (0.9.4) expects at boot, with
//! cbootc's own state beside it:
//!
//! ```text
//! <root>/composefs/                      the repository (images, objects, streams)
//! <root>/state/deploy/<id>/etc/upper     overlay upper dir over the image's /etc
//! <root>/state/deploy/<id>/etc/work      overlay work dir
//! <root>/state/deploy/<id>/var  ->  ../../os/default/var   (one /var for all)
//! <root>/state/os/default/var/           the shared /var
//! <root>/state/cbootc/deployments.json   cbootc's record of deployments
//! ```
//!
//! `<id>` is the hex id of the boot image named on the kernel command line.
//! The `var` symlink is relative so that it resolves the same whether the
//! root filesystem is mounted at `/sysroot` (initramfs, booted system) or
//! at a temporary directory (install).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::atomic;

/// Paths of the state on a root filesystem mounted at `root`.
#[derive(Debug, Clone)]
pub struct StateDirs {
    root: PathBuf,
}

impl StateDirs {
    /// State on the root filesystem mounted at `root` (`/sysroot` on a
    /// booted system).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The mount point of the root filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The composefs repository.
    pub fn repo(&self) -> PathBuf {
        self.root.join(crate::repo::REPO_DIR)
    }

    /// `state/deploy`, holding one directory per deployment.
    pub fn deployments_dir(&self) -> PathBuf {
        self.root.join("state/deploy")
    }

    /// `state/deploy/<id>`.
    pub fn deployment(&self, id: &str) -> PathBuf {
        self.deployments_dir().join(id)
    }

    /// The shared `/var`.
    pub fn shared_var(&self) -> PathBuf {
        self.root.join("state/os/default/var")
    }

    /// cbootc's own state directory.
    pub fn cbootc_dir(&self) -> PathBuf {
        self.root.join("state/cbootc")
    }

    /// The deployment record.
    pub fn record(&self) -> PathBuf {
        self.cbootc_dir().join("deployments.json")
    }

    /// `/var/lib/cbootc/config.toml` as stored in the shared var.
    pub fn config(&self) -> PathBuf {
        self.shared_var().join("lib/cbootc/config.toml")
    }

    /// The Secure Boot signing key and certificate
    /// (`/var/lib/cbootc/secureboot/`), in the shared var: never on the ESP.
    pub fn secureboot_dir(&self) -> PathBuf {
        self.shared_var().join("lib/cbootc/secureboot")
    }

    /// The Secure Boot key pair's files: (private key, PEM certificate,
    /// DER certificate).
    pub fn secureboot_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.secureboot_dir();
        (d.join("db.key"), d.join("db.crt"), d.join("db.cer"))
    }

    /// Create the shared var (empty, mode 0755) if it does not exist.
    pub fn ensure_shared_var(&self) -> Result<PathBuf> {
        let var = self.shared_var();
        fs::create_dir_all(&var).with_context(|| format!("creating {}", var.display()))?;
        Ok(var)
    }

    /// Create `state/deploy/<id>` with an empty `/etc` overlay and the
    /// `var` link. The directory is built under a temporary name and renamed
    /// into place, so a crash never leaves a half-made deployment that
    /// composefs-setup-root would boot into.
    pub fn create_deployment(&self, id: &str) -> Result<PathBuf> {
        let final_dir = self.deployment(id);
        let parent = final_dir.parent().expect("deployment dir has a parent");
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let tmp = parent.join(format!(".tmp-{id}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .with_context(|| format!("removing stale {}", tmp.display()))?;
        }
        for sub in ["etc/upper", "etc/work"] {
            let d = tmp.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        std::os::unix::fs::symlink("../../os/default/var", tmp.join("var"))
            .with_context(|| format!("creating {}/var", tmp.display()))?;
        atomic::sync_dir(&tmp)?;
        fs::rename(&tmp, &final_dir)
            .with_context(|| format!("renaming {} into place", final_dir.display()))?;
        atomic::sync_dir(parent)?;
        Ok(final_dir)
    }

    /// The `/etc` overlay upper directory of a deployment: files written
    /// here appear in that deployment's `/etc`.
    pub fn etc_upper(&self, id: &str) -> PathBuf {
        self.deployment(id).join("etc/upper")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDirs::new(dir.path());
        s.ensure_shared_var().unwrap();
        let d = s.create_deployment("abc").unwrap();
        assert!(d.join("etc/upper").is_dir());
        assert!(d.join("etc/work").is_dir());
        assert_eq!(
            fs::read_link(d.join("var")).unwrap(),
            Path::new("../../os/default/var")
        );
        // The link resolves to the shared var.
        assert_eq!(
            fs::canonicalize(d.join("var")).unwrap(),
            fs::canonicalize(s.shared_var()).unwrap()
        );
        assert!(!dir.path().join("state/deploy/.tmp-abc").exists());
    }

    #[test]
    fn stale_temp_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDirs::new(dir.path());
        fs::create_dir_all(dir.path().join("state/deploy/.tmp-x/junk")).unwrap();
        let d = s.create_deployment("x").unwrap();
        assert!(!d.join("junk").exists());
    }
}
