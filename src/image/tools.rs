//! Running the installed image's own programs (`mkfs.*`,
//! `grub-mkstandalone`) from the install host.
//!
//! Like bootc, cbootc formats and writes the bootloader with the tools of
//! the image being installed, so a disk never mixes the host's and the
//! image's versions (a newer host `mkfs.xfs` can enable features the image's
//! kernel cannot mount). The image is mounted read-only from the repository
//! and programs run chrooted into it, with `/dev` bound in (they open loop
//! devices) and a private tmpfs at `/tmp` as their scratch space.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::mount::MountOptions;

use crate::disk::mount::Mount;
use crate::repo::{ObjectId, Repo};
use crate::util::command::Tools;

/// Directories searched for programs inside the image.
const BIN_DIRS: [&str; 4] = ["usr/sbin", "usr/bin", "sbin", "bin"];

/// The image's root, mounted, with `/dev`, `/proc`, `/sys` and `/tmp` set up
/// for chrooted programs. Callers check [`ImageTools::has`] and fall back to
/// [`crate::util::command::HostTools`] (with a warning) for programs the
/// image lacks.
pub struct ImageTools {
    root: PathBuf,
    tmp: PathBuf,
    // Unmounted in reverse order on drop: submounts first, the image last.
    mounts: Vec<Mount>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ImageTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageTools")
            .field("root", &self.root)
            .finish()
    }
}

impl ImageTools {
    /// Mount image `id` of `repo` and prepare it for running programs.
    pub fn mount(repo: &Repo, id: &ObjectId) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cbootc-image-")
            .tempdir()
            .context("creating a mount point for the image")?;
        let root = dir.path().to_path_buf();
        repo.mount_at(&id.to_hex(), &root, &MountOptions::default())
            .with_context(|| format!("mounting the image at {}", root.display()))?;
        let mut tools = ImageTools {
            root: root.clone(),
            tmp: root.join("tmp"),
            mounts: Vec::new(),
            _dir: dir,
        };
        // Adopt the composefs mount so it is unmounted on every path.
        tools.mounts.push(Mount::adopt(&root));
        for (sub, kind) in [
            ("dev", "bind"),
            ("proc", "proc"),
            ("sys", "sysfs"),
            ("tmp", "tmpfs"),
        ] {
            let target = root.join(sub);
            if !target.is_dir() {
                anyhow::bail!("the image has no /{sub} directory to run its programs with");
            }
            let m = match kind {
                "bind" => Mount::bind(Path::new("/dev"), &target, true),
                "tmpfs" => Mount::tmpfs(&target),
                fstype => Mount::new(
                    Path::new(fstype),
                    &target,
                    fstype,
                    rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                    None,
                ),
            }
            .with_context(|| format!("preparing /{sub} in the mounted image"))?;
            tools.mounts.push(m);
        }
        Ok(tools)
    }

    /// The mounted image's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the image has `program`.
    pub fn has(&self, program: &str) -> bool {
        BIN_DIRS
            .iter()
            .any(|d| self.root.join(d).join(program).exists())
    }

    /// Unmount everything, reporting errors (drop does it too, quietly).
    pub fn close(mut self) -> Result<()> {
        while let Some(m) = self.mounts.pop() {
            m.unmount()?;
        }
        Ok(())
    }
}

impl Drop for ImageTools {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
    }
}

impl Tools for ImageTools {
    fn command(&self, program: &str) -> Result<Command> {
        if !self.has(program) {
            anyhow::bail!("the image has no {program}");
        }
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root).arg(program);
        Ok(cmd)
    }

    fn scratch(&self) -> (&Path, &Path) {
        (&self.tmp, Path::new("/tmp"))
    }
}
