//! Durable atomic file replacement.
//!
//! A crash at any point must leave either the old or the new content, never a
//! torn file: write a temporary file in the same directory, fsync it, rename
//! it over the target, then fsync the directory so the rename itself is on
//! disk (see rename(2) and the ext4 `auto_da_alloc` discussion: without the
//! fsyncs a crash can leave a zero-length file).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Atomically replace `path` with `contents`, with permission bits `mode`.
pub fn write_file_mode(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".cbootc-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    if let Err(e) = tmp
        .as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
    {
        // FAT (the ESP) has no Unix modes: the mount options decide, and
        // chmod fails with EPERM. Anywhere else a failed chmod is an error.
        if !is_fat(dir) {
            return Err(e).with_context(|| format!("setting mode of {}", tmp.path().display()));
        }
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

/// Whether `dir` is on a FAT filesystem (statfs `MSDOS_SUPER_MAGIC`).
fn is_fat(dir: &Path) -> bool {
    const MSDOS_SUPER_MAGIC: i64 = 0x4d44;
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type == MSDOS_SUPER_MAGIC)
}

/// Atomically replace `path` with `contents` (mode 0644).
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    write_file_mode(path, contents, 0o644)
}

/// Atomically copy `src` to `dst` (mode 0644): the content is fsynced before
/// the rename, so `dst` is either absent/old or complete.
pub fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    write_file(dst, &data)
}

/// fsync a directory so that entries created, renamed or removed in it are
/// durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Atomically replace the symlink `path` so that it points to `target`.
pub fn replace_symlink(target: &Path, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".cbootc-tmp-{}", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("creating symlink {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_file_mode(&p, b"secret", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn symlink_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        replace_symlink(Path::new("a"), &p).unwrap();
        replace_symlink(Path::new("b"), &p).unwrap();
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("b"));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = write_file(Path::new("/nonexistent-cbootc/x"), b"").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-cbootc"));
    }
}
