//! Writing part of an image's filesystem tree (such as `/var`) onto disk
//! with its full metadata.
//!
//! composefs' own `fs::write_to_path` sets neither owners, xattrs nor
//! times, applies the umask to modes (so `/var/tmp` would lose its sticky
//! bit) and reads each file in one `read(2)`; the shared `/var` of a
//! deployment needs all of that right (service users own their state
//! directories), so it is written here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use composefs::generic_tree::{LeafContent, LeafId, Stat};
use composefs::tree::{Directory, FileSystem, Inode, RegularFile};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use crate::repo::{ObjectId, Repo};

/// What an extraction wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    /// Directories created.
    pub dirs: u64,
    /// Non-directory entries created (files, links, devices).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Write the directory `subdir` (absolute, e.g. `/var`) of `fs` into the
/// existing directory `dest`: its contents, and its own owner, mode, xattrs
/// and mtime applied to `dest`. A missing `subdir` writes nothing.
pub fn extract_dir(
    repo: &Repo,
    fs: &FileSystem<ObjectId>,
    subdir: &str,
    dest: &Path,
) -> Result<ExtractStats> {
    let mut stats = ExtractStats::default();
    let dir = match fs
        .root
        .get_directory_opt(OsStr::new(subdir.trim_start_matches('/')))
    {
        Ok(Some(d)) => d,
        _ if subdir == "/" => &fs.root,
        _ => return Ok(stats),
    };
    let mut writer = Writer {
        repo,
        fs,
        links: HashMap::new(),
        stats: &mut stats,
    };
    writer
        .write_contents(dir, dest)
        .with_context(|| format!("writing the image's {subdir} to {}", dest.display()))?;
    apply_metadata(dest, &dir.stat, true)?;
    Ok(stats)
}

/// The bytes `subdir` of `fs` holds in regular files (for space checks);
/// a hard-linked file counts once.
pub fn content_size(fs: &FileSystem<ObjectId>, subdir: &str) -> u64 {
    fn walk(
        dir: &Directory<ObjectId>,
        fs: &FileSystem<ObjectId>,
        seen: &mut std::collections::HashSet<LeafId>,
    ) -> u64 {
        let mut total = 0;
        for (_, inode) in dir.entries() {
            total += match inode {
                Inode::Directory(d) => walk(d, fs, seen),
                Inode::Leaf(id, _) if seen.insert(*id) => match &fs.leaf(*id).content {
                    LeafContent::Regular(f) => f.file_size(),
                    _ => 0,
                },
                Inode::Leaf(..) => 0,
            };
        }
        total
    }
    match fs
        .root
        .get_directory_opt(OsStr::new(subdir.trim_start_matches('/')))
    {
        Ok(Some(d)) => walk(d, fs, &mut Default::default()),
        _ => 0,
    }
}

struct Writer<'a> {
    repo: &'a Repo,
    fs: &'a FileSystem<ObjectId>,
    /// Hard links: the path each multiply-linked leaf was first written to.
    links: HashMap<LeafId, PathBuf>,
    stats: &'a mut ExtractStats,
}

impl Writer<'_> {
    fn write_contents(&mut self, dir: &Directory<ObjectId>, dest: &Path) -> Result<()> {
        for (name, inode) in dir.sorted_entries() {
            let path = dest.join(name);
            match inode {
                Inode::Directory(sub) => {
                    match fs::create_dir(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("creating {}", path.display()));
                        }
                    }
                    self.stats.dirs += 1;
                    self.write_contents(sub, &path)?;
                    apply_metadata(&path, &sub.stat, true)?;
                }
                Inode::Leaf(id, _) => self.write_leaf(*id, &path)?,
            }
        }
        Ok(())
    }

    fn write_leaf(&mut self, id: LeafId, path: &Path) -> Result<()> {
        if let Some(first) = self.links.get(&id) {
            fs::hard_link(first, path)
                .with_context(|| format!("linking {} to {}", path.display(), first.display()))?;
            self.stats.files += 1;
            return Ok(());
        }
        let leaf = self.fs.leaf(id);
        let mode = Mode::from_raw_mode(leaf.stat.st_mode & 0o7777);
        match &leaf.content {
            LeafContent::Regular(file) => self.write_regular(file, path)?,
            LeafContent::Symlink(target) => symlink(Path::new(&**target), path)
                .with_context(|| format!("creating symlink {}", path.display()))?,
            LeafContent::BlockDevice(rdev) => mknod(path, FileType::BlockDevice, mode, *rdev)?,
            LeafContent::CharacterDevice(rdev) => {
                mknod(path, FileType::CharacterDevice, mode, *rdev)?
            }
            LeafContent::Fifo => mknod(path, FileType::Fifo, mode, 0)?,
            LeafContent::Socket => mknod(path, FileType::Socket, mode, 0)?,
        }
        let is_symlink = matches!(leaf.content, LeafContent::Symlink(_));
        apply_metadata(path, &leaf.stat, !is_symlink)?;
        self.links.insert(id, path.to_path_buf());
        self.stats.files += 1;
        Ok(())
    }

    fn write_regular(&mut self, file: &RegularFile<ObjectId>, path: &Path) -> Result<()> {
        let mut out =
            File::create_new(path).with_context(|| format!("creating {}", path.display()))?;
        match file {
            RegularFile::Inline(data) => {
                io::Write::write_all(&mut out, data)
                    .with_context(|| format!("writing {}", path.display()))?;
                self.stats.bytes += data.len() as u64;
            }
            RegularFile::External(object, size) | RegularFile::ExternalNoVerity(object, size) => {
                let mut src = File::from(
                    self.repo
                        .open_object(object)
                        .with_context(|| format!("opening the object for {}", path.display()))?,
                );
                let copied = io::copy(&mut src, &mut out)
                    .with_context(|| format!("writing {}", path.display()))?;
                anyhow::ensure!(
                    copied == *size,
                    "object for {} has {copied} bytes, the image says {size}",
                    path.display()
                );
                self.stats.bytes += copied;
            }
            RegularFile::Sparse(size) => out
                .set_len(*size)
                .with_context(|| format!("sizing {}", path.display()))?,
        }
        Ok(())
    }
}

fn mknod(path: &Path, kind: FileType, mode: Mode, rdev: u64) -> Result<()> {
    rustix::fs::mknodat(CWD, path, kind, mode, rdev)
        .with_context(|| format!("creating device node {}", path.display()))
}

/// Owner first (chown clears set-id bits), then mode (bypassing the umask,
/// keeping set-id and sticky bits), xattrs, and the mtime last.
fn apply_metadata(path: &Path, stat: &Stat, follow_mode: bool) -> Result<()> {
    lchown(path, Some(stat.st_uid), Some(stat.st_gid))
        .with_context(|| format!("setting the owner of {}", path.display()))?;
    if follow_mode {
        fs::set_permissions(path, fs::Permissions::from_mode(stat.st_mode & 0o7777))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    for (name, value) in &stat.xattrs {
        rustix::fs::lsetxattr(path, name.as_ref(), value, XattrFlags::empty()).with_context(
            || {
                format!(
                    "setting xattr {} on {}",
                    name.to_string_lossy(),
                    path.display()
                )
            },
        )?;
    }
    let mtime = Timespec {
        tv_sec: stat.st_mtim_sec,
        tv_nsec: stat.st_mtim_nsec.into(),
    };
    let times = Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("setting the mtime of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    fn stat(mode: u32, uid: u32, gid: u32) -> Stat {
        Stat {
            st_mode: mode,
            st_uid: uid,
            st_gid: gid,
            st_mtim_sec: 1_600_000_000,
            st_mtim_nsec: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// /var with a sticky tmp, an owned file, a hard link and a symlink.
    fn tree() -> FileSystem<ObjectId> {
        let mut fs = FileSystem::new(stat(0o755, 0, 0));
        let file = fs.push_leaf(
            stat(0o4750, 12, 34),
            LeafContent::Regular(RegularFile::Inline(b"hello".to_vec().into())),
        );
        let link = fs.push_leaf(
            stat(0o777, 0, 0),
            LeafContent::Symlink(OsStr::new("data").into()),
        );
        let mut var = Directory::new(stat(0o755, 0, 0));
        let mut tmp = Directory::new(stat(0o1777, 0, 0));
        tmp.insert(OsStr::new("data"), Inode::leaf(file));
        tmp.insert(OsStr::new("data2"), Inode::leaf(file));
        tmp.insert(OsStr::new("ln"), Inode::leaf(link));
        var.insert(OsStr::new("tmp"), Inode::Directory(Box::new(tmp)));
        fs.root
            .insert(OsStr::new("var"), Inode::Directory(Box::new(var)));
        fs
    }

    #[test]
    fn writes_metadata_links_and_content() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test sets file owners and must run as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::repo::init(&dir.path().join("repo"), false).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let fs_tree = tree();
        assert_eq!(content_size(&fs_tree, "/var"), 5);
        let stats = extract_dir(&repo, &fs_tree, "/var", &out).unwrap();
        assert_eq!(
            stats,
            ExtractStats {
                dirs: 1,
                files: 3,
                bytes: 5
            }
        );

        let tmp = fs::metadata(out.join("tmp")).unwrap();
        assert_eq!(tmp.mode() & 0o7777, 0o1777);
        assert_eq!(tmp.mtime(), 1_600_000_000);
        let data = fs::metadata(out.join("tmp/data")).unwrap();
        assert_eq!(
            (data.uid(), data.gid(), data.mode() & 0o7777),
            (12, 34, 0o4750)
        );
        assert_eq!(data.nlink(), 2, "hard link kept");
        assert_eq!(fs::read(out.join("tmp/data2")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(out.join("tmp/ln")).unwrap(),
            Path::new("data")
        );
    }

    #[test]
    fn missing_subdir_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::repo::init(&dir.path().join("repo"), false).unwrap();
        let stats = extract_dir(&repo, &tree(), "/srv", dir.path()).unwrap();
        assert_eq!(stats, ExtractStats::default());
    }
}
