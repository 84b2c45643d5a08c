//! Carrying `/etc` changes into a new deployment.
//!
//! A deployment's `/etc` is an overlay: the image's `/etc` below, the
//! deployment's `etc/upper` on top. The upper directory therefore holds
//! exactly the user's changes: files written or edited, whiteouts (0/0
//! character devices) for files deleted, opaque directories. Copying the
//! booted deployment's upper into the new deployment's upper gives the
//! three-way result users expect (the same as the original cbootc and
//! bootc):
//!
//! - a file the user changed keeps the user's version;
//! - a file only the new image changed shows the new version (it is not
//!   in the upper, so the new lower shows through);
//! - a file the user deleted stays deleted (the whiteout comes along).
//!
//! What cannot be merged is a change of type: the user has a directory where
//! the new image has a file, or a file where it has a directory (the user's
//! file would hide the image's whole directory). Those are reported and the
//! upgrade stops before any boot entry changes.
//!
//! Overlay metadata: `trusted.overlay.origin` names a file handle in the
//! *old* lower layer and is dropped; a metacopy-only upper file (metadata
//! changed, data in the lower) is copied with its full content from the
//! merged `/etc` view.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use composefs::tree::{FileSystem, Inode};
use rustix::fs::{AtFlags, CWD, FileType, Mode, RenameFlags, Timespec, Timestamps, XattrFlags};

use crate::repo::ObjectId;
use crate::util::atomic;

/// What a carry-forward copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Files, links and directories copied.
    pub entries: u64,
    /// Whiteouts (deletions) copied.
    pub deletions: u64,
}

/// A change of type that cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Path under `/etc`.
    pub path: PathBuf,
    /// What the user has and what the image has.
    pub what: &'static str,
}

/// Find the changes in `upper` that the new image's tree `new_image`
/// cannot take.
pub fn conflicts(upper: &Path, new_image: &FileSystem<ObjectId>) -> Result<Vec<Conflict>> {
    let mut out = Vec::new();
    walk_conflicts(upper, Path::new(""), new_image, &mut out)?;
    Ok(out)
}

fn walk_conflicts(
    upper: &Path,
    rel: &Path,
    image: &FileSystem<ObjectId>,
    out: &mut Vec<Conflict>,
) -> Result<()> {
    let dir = upper.join(rel);
    for entry in read_dir_sorted(&dir)? {
        let rel = rel.join(&entry);
        let md = fs::symlink_metadata(upper.join(&rel))
            .with_context(|| format!("reading {}", upper.join(&rel).display()))?;
        if is_whiteout(&md) {
            continue;
        }
        match (md.is_dir(), image_is_dir(image, &rel)) {
            (true, Some(false)) => out.push(Conflict {
                path: Path::new("/etc").join(&rel),
                what: "you have a directory where the new image has a file",
            }),
            (false, Some(true)) => out.push(Conflict {
                path: Path::new("/etc").join(&rel),
                what: "you have a file where the new image has a directory",
            }),
            (true, _) => walk_conflicts(upper, &rel, image, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// Whether `/etc/<rel>` in the image is a directory (`None`: absent).
fn image_is_dir(fs: &FileSystem<ObjectId>, rel: &Path) -> Option<bool> {
    let full = Path::new("etc").join(rel);
    let (dir, name) = fs.as_dir().split_ref(full.as_os_str()).ok()?;
    match dir.lookup(name)? {
        Inode::Directory(_) => Some(true),
        Inode::Leaf(..) => Some(false),
    }
}

/// Format conflicts as one line for an error message.
pub fn describe(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("{} ({})", c.path.display(), c.what))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Replace `dest_upper` with a copy of `src_upper`. `merged_etc` is the
/// booted system's merged `/etc`, used for metacopy-only files. The new
/// upper is built beside the old one and swapped in with one atomic
/// `renameat2(RENAME_EXCHANGE)`.
pub fn carry_forward(
    src_upper: &Path,
    dest_upper: &Path,
    merged_etc: Option<&Path>,
) -> Result<MergeReport> {
    let parent = dest_upper.parent().context("upper dir has no parent")?;
    let staging = parent.join("upper.cbootc-new");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing stale {}", staging.display()))?;
    }
    fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let mut report = MergeReport::default();
    let mut cx = Copier {
        merged: merged_etc,
        report: &mut report,
    };
    cx.copy_dir_contents(src_upper, &staging, Path::new(""))?;
    copy_metadata(src_upper, &staging, true)?;
    sync_tree(&staging)?;
    if dest_upper.exists() {
        rustix::fs::renameat_with(CWD, &staging, CWD, dest_upper, RenameFlags::EXCHANGE)
            .with_context(|| format!("swapping in the new {}", dest_upper.display()))?;
        atomic::sync_dir(parent)?;
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the old upper {}", staging.display()))?;
    } else {
        fs::rename(&staging, dest_upper)
            .with_context(|| format!("renaming into {}", dest_upper.display()))?;
    }
    atomic::sync_dir(parent)?;
    Ok(report)
}

struct Copier<'a> {
    merged: Option<&'a Path>,
    report: &'a mut MergeReport,
}

impl Copier<'_> {
    fn copy_dir_contents(&mut self, src: &Path, dst: &Path, rel: &Path) -> Result<()> {
        for name in read_dir_sorted(src)? {
            let (s, d, rel) = (src.join(&name), dst.join(&name), rel.join(&name));
            let md =
                fs::symlink_metadata(&s).with_context(|| format!("reading {}", s.display()))?;
            let ft = md.file_type();
            if ft.is_dir() {
                fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
                self.copy_dir_contents(&s, &d, &rel)?;
                copy_metadata(&s, &d, true)?;
            } else if ft.is_symlink() {
                symlink(fs::read_link(&s)?, &d)
                    .with_context(|| format!("creating {}", d.display()))?;
                copy_metadata(&s, &d, false)?;
            } else if ft.is_file() {
                let source = if has_xattr(&s, "trusted.overlay.metacopy") {
                    match self.merged {
                        Some(m) => m.join(&rel),
                        None => bail!(
                            "{} holds only metadata and no merged /etc was given to read its content",
                            s.display()
                        ),
                    }
                } else {
                    s.clone()
                };
                let mut out =
                    File::create_new(&d).with_context(|| format!("creating {}", d.display()))?;
                io::copy(
                    &mut File::open(&source)
                        .with_context(|| format!("opening {}", source.display()))?,
                    &mut out,
                )
                .with_context(|| format!("copying {} to {}", source.display(), d.display()))?;
                copy_metadata(&s, &d, true)?;
            } else {
                // Whiteouts (0/0 character devices) and any other special file.
                let kind = if ft.is_char_device() {
                    FileType::CharacterDevice
                } else if ft.is_block_device() {
                    FileType::BlockDevice
                } else if ft.is_fifo() {
                    FileType::Fifo
                } else {
                    FileType::Socket
                };
                rustix::fs::mknodat(
                    CWD,
                    &d,
                    kind,
                    Mode::from_raw_mode(md.mode() & 0o7777),
                    md.rdev(),
                )
                .with_context(|| format!("creating {}", d.display()))?;
                copy_metadata(&s, &d, true)?;
                if is_whiteout(&md) {
                    self.report.deletions += 1;
                    continue;
                }
            }
            self.report.entries += 1;
        }
        Ok(())
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort();
    Ok(names)
}

fn has_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lgetxattr(path, name, &mut [0u8; 0][..]).is_ok()
}

fn xattr_names(path: &Path) -> Result<Vec<OsString>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut buf[..])
        .with_context(|| format!("listing xattrs of {}", path.display()))?;
    Ok(buf[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsStr::new(std::str::from_utf8(n).unwrap_or_default()).to_os_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// Owner, mode, xattrs (minus overlay bookkeeping that names the old
/// lower layer) and mtime.
fn copy_metadata(src: &Path, dst: &Path, set_mode: bool) -> Result<()> {
    let md = fs::symlink_metadata(src)?;
    lchown(dst, Some(md.uid()), Some(md.gid()))
        .with_context(|| format!("setting the owner of {}", dst.display()))?;
    if set_mode {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .with_context(|| format!("setting the mode of {}", dst.display()))?;
    }
    for name in xattr_names(src)? {
        let n = name.to_string_lossy();
        if n == "trusted.overlay.origin" || n == "trusted.overlay.metacopy" {
            continue;
        }
        let mut value = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(src, name.as_os_str(), &mut value[..])
            .with_context(|| format!("reading xattr {n} of {}", src.display()))?;
        rustix::fs::lsetxattr(dst, name.as_os_str(), &value[..len], XattrFlags::empty())
            .with_context(|| format!("setting xattr {n} on {}", dst.display()))?;
    }
    let t = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = Timestamps {
        last_access: t(md.atime(), md.atime_nsec()),
        last_modification: t(md.mtime(), md.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("setting the times of {}", dst.display()))?;
    Ok(())
}

/// fsync every file and directory under `dir`.
fn sync_tree(dir: &Path) -> Result<()> {
    for name in read_dir_sorted(dir)? {
        let p = dir.join(name);
        let md = fs::symlink_metadata(&p)?;
        if md.is_dir() {
            sync_tree(&p)?;
        } else if md.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", p.display()))?;
        }
    }
    atomic::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use composefs::generic_tree::{LeafContent, Stat};
    use composefs::tree::{Directory, RegularFile};

    fn st() -> Stat {
        Stat {
            st_mode: 0o755,
            st_uid: 0,
            st_gid: 0,
            st_mtim_sec: 0,
            st_mtim_nsec: 0,
            xattrs: Default::default(),
        }
    }

    /// A new image with /etc/app (dir) and /etc/conf.d (file).
    fn image() -> FileSystem<ObjectId> {
        let mut fs = FileSystem::new(st());
        let f = fs.push_leaf(
            st(),
            LeafContent::Regular(RegularFile::Inline(b"x".to_vec().into())),
        );
        let mut etc = Directory::new(st());
        etc.insert(
            OsStr::new("app"),
            Inode::Directory(Box::new(Directory::new(st()))),
        );
        etc.insert(OsStr::new("conf.d"), Inode::leaf(f));
        etc.insert(OsStr::new("plain"), Inode::leaf(f));
        fs.root
            .insert(OsStr::new("etc"), Inode::Directory(Box::new(etc)));
        fs
    }

    #[test]
    fn type_changes_conflict_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path();
        fs::write(upper.join("app"), "user file over image dir").unwrap();
        fs::create_dir(upper.join("conf.d")).unwrap();
        fs::write(upper.join("plain"), "edited").unwrap();
        fs::write(upper.join("new-file"), "added").unwrap();
        let c = conflicts(upper, &image()).unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].path, Path::new("/etc/app"));
        assert!(c[0].what.contains("you have a file"));
        assert_eq!(c[1].path, Path::new("/etc/conf.d"));
        assert!(describe(&c).contains("/etc/conf.d (you have a directory"));
    }

    #[test]
    fn carries_files_whiteouts_links_and_metadata() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test creates whiteouts and sets owners: run as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("old/upper");
        let dst = dir.path().join("new/upper");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(dst.join("stale"), "replaced").unwrap();
        fs::write(src.join("sub/edited.conf"), "mine").unwrap();
        lchown(src.join("sub/edited.conf"), Some(7), Some(8)).unwrap();
        fs::set_permissions(
            src.join("sub/edited.conf"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink("edited.conf", src.join("sub/link")).unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("deleted"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        rustix::fs::lsetxattr(
            src.join("sub"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::lsetxattr(
            src.join("sub"),
            "trusted.overlay.origin",
            b"old",
            XattrFlags::empty(),
        )
        .unwrap();

        let report = carry_forward(&src, &dst, None).unwrap();
        assert_eq!(
            report,
            MergeReport {
                entries: 3,
                deletions: 1
            }
        );
        assert!(
            !dst.join("stale").exists(),
            "the destination is replaced, not merged into"
        );
        assert_eq!(
            fs::read_to_string(dst.join("sub/edited.conf")).unwrap(),
            "mine"
        );
        let md = fs::metadata(dst.join("sub/edited.conf")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (7, 8, 0o600));
        assert_eq!(
            fs::read_link(dst.join("sub/link")).unwrap(),
            Path::new("edited.conf")
        );
        let w = fs::symlink_metadata(dst.join("deleted")).unwrap();
        assert!(is_whiteout(&w));
        assert!(has_xattr(&dst.join("sub"), "trusted.overlay.opaque"));
        assert!(!has_xattr(&dst.join("sub"), "trusted.overlay.origin"));
        assert!(!dir.path().join("new/upper.cbootc-new").exists());
    }

    #[test]
    fn metacopy_files_take_content_from_the_merged_view() {
        if !rustix::process::geteuid().is_root() {
            panic!("trusted.* xattrs need root");
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("upper");
        let merged = dir.path().join("merged");
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&merged).unwrap();
        fs::write(src.join("f"), "").unwrap();
        rustix::fs::lsetxattr(
            src.join("f"),
            "trusted.overlay.metacopy",
            b"",
            XattrFlags::empty(),
        )
        .unwrap();
        fs::write(merged.join("f"), "real content").unwrap();
        let dst = dir.path().join("dst/upper");
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        assert!(carry_forward(&src, &dst, None).is_err());
        carry_forward(&src, &dst, Some(&merged)).unwrap();
        assert_eq!(fs::read_to_string(dst.join("f")).unwrap(), "real content");
        assert!(!has_xattr(&dst.join("f"), "trusted.overlay.metacopy"));
    }
}
