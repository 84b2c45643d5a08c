//! Running the installed image's own programs (`mkfs.*`,
//! `grub-mkstandalone`) from the install host.
//!
//! Like bootc, cbootc formats and writes the bootloader with the tools of
//! the image being installed, so a disk never mixes the host's and the
//! image's versions (a newer host `mkfs.xfs` can enable features the image's
//! kernel cannot mount). The image is mounted read-only from the repository
//! (through a loop device, see `mount_image`) and programs run chrooted
//! into it, with `/dev` bound in (they open loop devices) and a private
//! tmpfs at `/tmp` as their scratch space.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::mount::{MountOptions, VerityRequirement};

use crate::disk::loopdev::LoopDevice;
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
    /// The loop device the image's EROFS is mounted from, detached after
    /// the mounts are gone.
    image_loop: Option<LoopDevice>,
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
        let image_loop = mount_image(repo, id, &root)
            .with_context(|| format!("mounting the image at {}", root.display()))?;
        let mut tools = ImageTools {
            root: root.clone(),
            tmp: root.join("tmp"),
            mounts: Vec::new(),
            image_loop: Some(image_loop),
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
        if let Some(lo) = self.image_loop.take() {
            // Not `detach`: the EROFS on it goes some time after the
            // overlay's unmount (seen taking over 2 s in a TCG guest).
            lo.release()?;
        }
        Ok(())
    }
}

impl Drop for ImageTools {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
        if let Some(lo) = self.image_loop.take() {
            let _ = lo.release();
        }
    }
}

/// Mount image `id` of `repo` on `root` (composefs: its EROFS image under
/// an overlayfs over the repository's objects), with the EROFS read through
/// a loop device, which is returned and must outlive the mount.
///
/// composefs' `Repository::mount_at` hands the kernel the image *file*
/// (file-backed EROFS, Linux ≥ 6.12), which the kernel accepts only from a
/// filesystem that can read pages for it (ext4, xfs, btrfs), and refuses
/// from overlayfs or tmpfs with ENOTBLK ("Block device required"). Install
/// stages its repository in `/var/tmp`, which inside `podman run` is the
/// container's overlayfs: the image could not be mounted there, and install
/// fell back to the host's tools. A loop device reads any file on any
/// kernel, and [`LoopDevice`] copes with a container's `/dev` snapshot,
/// which composefs' own loop fallback (its `rhel9` feature) does not.
fn mount_image(repo: &Repo, id: &ObjectId, root: &Path) -> Result<LoopDevice> {
    let name = id.to_hex();
    // open_image checks the file's fs-verity digest where the repository
    // requires it, and says whether the overlay must require it too.
    let (image, verity) = repo.open_image(&name)?;
    let fd_link = format!("/proc/self/fd/{}", image.as_raw_fd());
    let path = std::fs::read_link(&fd_link).with_context(|| format!("reading {fd_link}"))?;
    let image_loop = LoopDevice::attach(&path, 0, 0, true)?;
    let dev: OwnedFd = std::fs::File::open(image_loop.path())
        .with_context(|| format!("opening {}", image_loop.path().display()))?
        .into();
    let verity = if verity {
        VerityRequirement::Required
    } else {
        VerityRequirement::Disabled
    };
    let objects = repo
        .objects_dir()
        .context("opening the repository's objects")?;
    // Given a block device, composefs mounts it as it is (its EROFS source
    // is the fd's /proc/self/fd path, which resolves to the device node).
    let mnt = composefs::mount::composefs_fsmount(
        dev,
        &name,
        &[objects.as_fd()],
        verity,
        &MountOptions::default(),
    )?;
    composefs::mount::mount_at(mnt, rustix::fs::CWD, root)?;
    Ok(image_loop)
}

impl Tools for ImageTools {
    fn command(&self, program: &str) -> Result<Command> {
        if !self.has(program) {
            anyhow::bail!("the image has no {program}");
        }
        let mut cmd = Command::new("chroot");
        // cbootc's $TMPDIR (a host path) means nothing inside the image:
        // grub-mkstandalone fails with "cannot make temporary directory".
        cmd.arg(&self.root).arg(program).env("TMPDIR", "/tmp");
        Ok(cmd)
    }

    fn scratch(&self) -> (&Path, &Path) {
        (&self.tmp, Path::new("/tmp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_use_the_images_tmp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::write(dir.path().join("usr/bin/prog"), "").unwrap();
        let tools = ImageTools {
            root: dir.path().to_path_buf(),
            tmp: dir.path().join("tmp"),
            mounts: Vec::new(),
            image_loop: None,
            _dir: tempfile::tempdir().unwrap(),
        };
        let cmd = tools.command("prog").unwrap();
        let tmpdir = cmd.get_envs().find(|(k, _)| *k == "TMPDIR");
        assert_eq!(tmpdir, Some(("TMPDIR".as_ref(), Some("/tmp".as_ref()))));
    }
}
