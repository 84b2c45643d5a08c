//! Mounts that are released on every path: a [`Mount`] is unmounted when it
//! is dropped, so an install that fails half-way leaves no filesystem
//! mounted and no loop device pinned.
//!
//! Unmounting a writable filesystem first calls `syncfs(2)`: the kernel would
//! also write the data back when the last reference goes away, but it cannot
//! report a write-back error there, while `syncfs` returns it (Linux ≥ 5.8
//! reports errors since the previous syncfs through the superblock's
//! errseq_t). Without it an I/O error on the target disk would go unnoticed
//! and the install would claim success.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, StatVfsMountFlags, StatxFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// How long an explicit unmount retries while the target is busy (EBUSY can
/// be transient: a just-exited child's working directory, or a concurrent
/// `blkid` holding a file open).
const BUSY_RETRY: Duration = Duration::from_secs(2);

/// A mounted filesystem, unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    /// The mount's ID (statx STATX_MNT_ID, Linux ≥ 5.8), to avoid
    /// unmounting something else that was later mounted on top of it.
    mnt_id: Option<u64>,
    /// A recursive bind: the submounts it carries are unmounted first.
    recursive: bool,
    mounted: bool,
}

impl Mount {
    /// `mount(2)` `source` on `target` (an existing directory) as `fstype`
    /// with `flags` and filesystem-specific options `data` (e.g.
    /// `"errors=remount-ro"`).
    pub fn new(
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> Result<Mount> {
        let what = || {
            format!(
                "mounting {} ({fstype}) on {}",
                source.display(),
                target.display()
            )
        };
        let data = data
            .map(CString::new)
            .transpose()
            .with_context(|| format!("{}: mount options contain a NUL byte", what()))?;
        rustix::mount::mount(source, target, fstype, flags, data.as_deref()).with_context(what)?;
        Ok(Self::mounted(target, false))
    }

    /// Bind-mount `source` on `target`; `recursive` also binds the mounts
    /// below `source` (`MS_REC`).
    ///
    /// The new mounts are made private (`MS_PRIVATE`): where `source` is on a
    /// shared mount (systemd makes `/` shared), the copies would otherwise
    /// be peers of the originals, and unmounting a copy would propagate to
    /// the original (see "Shared Subtrees",
    /// Documentation/filesystems/sharedsubtree.rst).
    pub fn bind(source: &Path, target: &Path, recursive: bool) -> Result<Mount> {
        let result = if recursive {
            rustix::mount::mount_bind_recursive(source, target)
        } else {
            rustix::mount::mount_bind(source, target)
        };
        result.with_context(|| {
            format!(
                "bind-mounting {} on {}{}",
                source.display(),
                target.display(),
                if recursive { " (recursively)" } else { "" }
            )
        })?;
        let mount = Self::mounted(target, recursive);
        let private = if recursive {
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC
        } else {
            MountPropagationFlags::PRIVATE
        };
        rustix::mount::mount_change(target, private)
            .with_context(|| format!("making the bind mount on {} private", target.display()))?;
        Ok(mount)
    }

    /// Mount an empty tmpfs (mode 0755) on `target`.
    pub fn tmpfs(target: &Path) -> Result<Mount> {
        Self::new(
            Path::new("tmpfs"),
            target,
            "tmpfs",
            MountFlags::empty(),
            Some("mode=0755"),
        )
    }

    /// Take over a mount made elsewhere (e.g. by composefs' `mount_at`) so
    /// that it is released on drop like the others.
    pub fn adopt(target: &Path) -> Mount {
        Self::mounted(target, false)
    }

    fn mounted(target: &Path, recursive: bool) -> Mount {
        let mnt_id = mount_id(target);
        tracing::debug!("mounted {}", target.display());
        Mount {
            target: target.to_path_buf(),
            mnt_id,
            recursive,
            mounted: true,
        }
    }

    /// The mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Sync (if writable) and unmount, reporting errors. If the target stays
    /// busy for a couple of seconds, it is detached lazily (`MNT_DETACH`) so
    /// that it is released when its last user goes away, and an error says
    /// so.
    pub fn unmount(mut self) -> Result<()> {
        self.unmount_inner(true)
    }

    fn unmount_inner(&mut self, retry_busy: bool) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        let shown = self.target.display().to_string();
        let current = mount_id(&self.target);
        if let (Some(ours), Some(now)) = (self.mnt_id, current)
            && ours != now
        {
            bail!(
                "cannot unmount {shown}: another filesystem is mounted over it; unmount that first"
            );
        }
        let synced = self.sync();
        let deadline = Instant::now()
            + if retry_busy {
                BUSY_RETRY
            } else {
                Duration::ZERO
            };
        let mut result = Ok(());
        if self.recursive {
            for child in self.submounts()? {
                result = unmount_one(&child, deadline);
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = unmount_one(&self.target, deadline);
        }
        match result {
            Ok(()) => {}
            Err(Errno::BUSY) => {
                // MNT_DETACH takes the submounts with it.
                let lazy = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
                self.mounted = false;
                bail!(
                    "cannot unmount {shown}: it is busy (a process has a file open or its working directory there); {}",
                    match lazy {
                        Ok(()) =>
                            "detached it lazily, it is released when no longer used".to_string(),
                        Err(e) => format!("lazy unmount failed too: {e}"),
                    }
                );
            }
            // EINVAL: not a mount point any more, someone else unmounted it;
            // nothing is left to release.
            Err(Errno::INVAL) => tracing::warn!("{shown} was already unmounted"),
            Err(e) => return Err(e).with_context(|| format!("unmounting {shown}")),
        }
        self.mounted = false;
        tracing::debug!("unmounted {shown}");
        synced
    }

    /// Mount points strictly below the target, children before parents (the
    /// reverse of mountinfo order, which lists parents first and stacked
    /// mounts bottom-up).
    fn submounts(&self) -> Result<Vec<PathBuf>> {
        let target = self
            .target
            .canonicalize()
            .with_context(|| format!("resolving {}", self.target.display()))?;
        let mut below: Vec<PathBuf> = super::mountinfo::read()?
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p != &target && p.starts_with(&target))
            .collect();
        below.reverse();
        Ok(below)
    }

    /// `syncfs` the mounted filesystem unless it is read-only.
    fn sync(&self) -> Result<()> {
        let shown = self.target.display();
        let dir =
            File::open(&self.target).with_context(|| format!("opening {shown} to sync it"))?;
        let vfs = rustix::fs::fstatvfs(&dir).with_context(|| format!("statfs of {shown}"))?;
        if vfs.f_flag.contains(StatVfsMountFlags::RDONLY) {
            return Ok(());
        }
        rustix::fs::syncfs(&dir)
            .with_context(|| format!("writing back the filesystem mounted on {shown}"))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        // No retries here: Drop runs on error paths, where a quick lazy
        // detach is better than stalling.
        if let Err(e) = self.unmount_inner(false) {
            tracing::warn!("{e:#}");
        }
    }
}

/// `umount2(path, 0)`, retrying EBUSY until `deadline`.
fn unmount_one(path: &Path, deadline: Instant) -> Result<(), Errno> {
    loop {
        match rustix::mount::unmount(path, UnmountFlags::empty()) {
            Err(Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The ID of the mount `path` is on, if the kernel reports it.
fn mount_id(path: &Path) -> Option<u64> {
    let stx = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::MNT_ID,
    )
    .ok()?;
    (stx.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stx.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::mountinfo;

    /// Filesystem types mounted at `path` (temporary directories have
    /// canonical paths, as mountinfo shows them).
    fn mounted_fstypes(path: &Path) -> Vec<String> {
        mountinfo::mounts_at(path)
            .unwrap()
            .into_iter()
            .map(|m| m.fstype)
            .collect()
    }

    #[test]
    fn tmpfs_mount_and_unmount() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::tmpfs(dir.path()).unwrap();
        assert_eq!(m.target(), dir.path());
        assert_eq!(mounted_fstypes(dir.path()), vec!["tmpfs"]);
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        m.unmount().unwrap();
        assert!(mounted_fstypes(dir.path()).is_empty());
        // The file lived on the tmpfs, not in the directory below it.
        assert!(!dir.path().join("f").exists());
    }

    #[test]
    fn drop_unmounts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let _m = Mount::tmpfs(dir.path()).unwrap();
            assert_eq!(mounted_fstypes(dir.path()).len(), 1);
        }
        assert!(mounted_fstypes(dir.path()).is_empty());
    }

    #[test]
    fn drop_of_a_busy_mount_detaches_lazily() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::tmpfs(dir.path()).unwrap();
        let busy = File::create(dir.path().join("open")).unwrap();
        drop(m);
        assert!(mounted_fstypes(dir.path()).is_empty());
        drop(busy);
    }

    #[test]
    fn bind_recursive_or_not() {
        let src = tempfile::tempdir().unwrap();
        let sub = src.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let _submount = Mount::tmpfs(&sub).unwrap();
        std::fs::write(sub.join("in-submount"), b"x").unwrap();
        std::fs::write(src.path().join("top"), b"y").unwrap();

        let plain = tempfile::tempdir().unwrap();
        let m = Mount::bind(src.path(), plain.path(), false).unwrap();
        assert!(plain.path().join("top").exists());
        assert!(plain.path().join("sub").is_dir());
        assert!(!plain.path().join("sub/in-submount").exists());
        m.unmount().unwrap();

        let rec = tempfile::tempdir().unwrap();
        let m = Mount::bind(src.path(), rec.path(), true).unwrap();
        assert!(rec.path().join("sub/in-submount").exists());
        assert_eq!(mounted_fstypes(&rec.path().join("sub")), vec!["tmpfs"]);
        m.unmount().unwrap();
        assert!(mounted_fstypes(rec.path()).is_empty());
        assert!(mounted_fstypes(&rec.path().join("sub")).is_empty());
        // The original submount is untouched.
        assert!(sub.join("in-submount").exists());
    }

    #[test]
    fn unmounting_a_bind_of_a_shared_tree_does_not_propagate() {
        // A shared mount with a submount, like / and its children under
        // systemd: unmounting the copies must leave the originals alone.
        let src = tempfile::tempdir().unwrap();
        let top = Mount::tmpfs(src.path()).unwrap();
        rustix::mount::mount_change(src.path(), MountPropagationFlags::SHARED).unwrap();
        let sub = src.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let submount = Mount::tmpfs(&sub).unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();

        let dst = tempfile::tempdir().unwrap();
        let copy = Mount::bind(src.path(), dst.path(), true).unwrap();
        assert!(dst.path().join("sub/f").exists());
        copy.unmount().unwrap();
        assert!(sub.join("f").exists());
        assert_eq!(mounted_fstypes(&sub), vec!["tmpfs"]);
        submount.unmount().unwrap();
        top.unmount().unwrap();
    }

    #[test]
    fn unmount_waits_for_a_transient_user() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::tmpfs(dir.path()).unwrap();
        let busy = File::create(dir.path().join("open")).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(busy);
        });
        m.unmount().unwrap();
        closer.join().unwrap();
        assert!(mounted_fstypes(dir.path()).is_empty());
    }

    #[test]
    fn unmount_of_a_busy_mount_fails_clearly_and_detaches() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::tmpfs(dir.path()).unwrap();
        let busy = File::create(dir.path().join("open")).unwrap();
        let msg = format!("{:#}", m.unmount().unwrap_err());
        assert!(msg.contains("is busy"), "{msg}");
        assert!(msg.contains("detached it lazily"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(mounted_fstypes(dir.path()).is_empty());
        drop(busy);
    }

    #[test]
    fn does_not_unmount_what_is_mounted_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let below = Mount::tmpfs(dir.path()).unwrap();
        std::fs::write(dir.path().join("below"), b"x").unwrap();
        let above = Mount::tmpfs(dir.path()).unwrap();
        let msg = format!("{:#}", below.unmount_ref_for_test().unwrap_err());
        assert!(
            msg.contains("another filesystem is mounted over it"),
            "{msg}"
        );
        assert_eq!(mounted_fstypes(dir.path()).len(), 2);
        above.unmount().unwrap();
        assert!(dir.path().join("below").exists());
        below.unmount().unwrap();
        assert!(mounted_fstypes(dir.path()).is_empty());
    }

    impl Mount {
        fn unmount_ref_for_test(&self) -> Result<()> {
            // Same checks as unmount() without consuming self.
            let mut probe = Mount {
                target: self.target.clone(),
                mnt_id: self.mnt_id,
                recursive: false,
                mounted: true,
            };
            let r = probe.unmount_inner(true);
            probe.mounted = false;
            r
        }
    }

    #[test]
    fn errors_name_source_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let msg = format!(
            "{:#}",
            Mount::new(
                Path::new("/nonexistent-cbootc-dev"),
                dir.path(),
                "ext4",
                MountFlags::empty(),
                None
            )
            .unwrap_err()
        );
        assert!(
            msg.contains("mounting /nonexistent-cbootc-dev (ext4) on"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            Mount::new(
                Path::new("tmpfs"),
                dir.path(),
                "tmpfs",
                MountFlags::empty(),
                Some("a\0b")
            )
            .unwrap_err()
        );
        assert!(msg.contains("NUL"), "{msg}");
        assert!(mounted_fstypes(dir.path()).is_empty());
    }

    #[test]
    fn read_only_mount_is_not_synced_but_unmounts() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::new(
            Path::new("tmpfs"),
            dir.path(),
            "tmpfs",
            MountFlags::RDONLY,
            None,
        )
        .unwrap();
        assert!(std::fs::write(dir.path().join("f"), b"x").is_err());
        m.unmount().unwrap();
        assert!(mounted_fstypes(dir.path()).is_empty());
    }

    #[test]
    fn ext4_data_survives_unmount_and_detach() {
        use crate::disk::loopdev::LoopDevice;
        use crate::disk::mkfs::{FsKind, mkfs};
        use crate::disk::testutil::ScratchDisk;

        let disk = ScratchDisk::new(64 << 20);
        let tools = crate::util::command::HostTools::new().unwrap();
        mkfs(
            &tools,
            FsKind::Ext4,
            disk.dev(),
            "t",
            &uuid::Uuid::new_v4(),
            false,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::new(disk.dev(), dir.path(), "ext4", MountFlags::empty(), None).unwrap();
        assert_eq!(mounted_fstypes(dir.path()), vec!["ext4"]);
        std::fs::write(dir.path().join("hello"), b"persisted").unwrap();
        m.unmount().unwrap();
        let ScratchDisk { lo, image } = disk;
        lo.detach().unwrap();

        let lo = LoopDevice::attach(image.path(), 0, 0, true).unwrap();
        let m = Mount::new(lo.path(), dir.path(), "ext4", MountFlags::RDONLY, None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("hello")).unwrap(),
            b"persisted"
        );
        m.unmount().unwrap();
        lo.detach().unwrap();
    }
}
