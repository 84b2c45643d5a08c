//! Parsing `/proc/self/mountinfo`, the kernel's list of the mounts visible
//! to this process.
//!
//! Used to refuse installing onto a disk that is mounted (by device number,
//! and by source path for filesystems such as btrfs whose mounts carry an
//! anonymous device number), and by tests to check that mounts really went
//! away. Format: proc(5), "/proc/pid/mountinfo":
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//!
//! Paths have space, tab, newline and backslash escaped as `\ooo` octal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique mount ID.
    pub mount_id: u64,
    /// Major device number of the filesystem (`st_dev`).
    pub major: u32,
    /// Minor device number of the filesystem.
    pub minor: u32,
    /// Root of the mount within the filesystem.
    pub root: PathBuf,
    /// Mount point, relative to this process's root.
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Mount source, e.g. `/dev/sda2` (filesystem specific).
    pub source: String,
}

/// Read `/proc/self/mountinfo`.
pub fn read() -> Result<Vec<MountInfo>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    parse(&text)
}

/// Parse mountinfo text.
pub fn parse(text: &str) -> Result<Vec<MountInfo>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| parse_line(line).with_context(|| format!("malformed mountinfo line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let mount_id = l.next()?.parse().ok()?;
    let _parent = l.next()?;
    let (major, minor) = l.next()?.split_once(':')?;
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let source =
        String::from_utf8_lossy(unescape(r.next()?).as_os_str().as_encoded_bytes()).into_owned();
    Some(MountInfo {
        mount_id,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root,
        mount_point,
        fstype,
        source,
    })
}

/// Undo the kernel's `\ooo` octal escapes (fs/proc_namespace.c, mangle()).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mounts whose mount point is exactly `path`, in mount order (the last
/// one is on top).
pub fn mounts_at(path: &Path) -> Result<Vec<MountInfo>> {
    Ok(read()?
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_example_from_proc_5() {
        let m = parse(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
        )
        .unwrap();
        assert_eq!(
            m,
            vec![MountInfo {
                mount_id: 36,
                major: 98,
                minor: 0,
                root: "/mnt1".into(),
                mount_point: "/mnt2".into(),
                fstype: "ext3".into(),
                source: "/dev/root".into(),
            }]
        );
    }

    #[test]
    fn unescapes_and_handles_no_optional_fields() {
        let m = parse("1 2 0:5 / /tmp/a\\040b\\134c rw - tmpfs my\\011src rw\n").unwrap();
        assert_eq!(m[0].mount_point, Path::new("/tmp/a b\\c"));
        assert_eq!(m[0].source, "my\tsrc");
        assert_eq!((m[0].major, m[0].minor), (0, 5));
    }

    #[test]
    fn malformed_is_an_error() {
        let err = parse("garbage\n").unwrap_err();
        assert!(format!("{err:#}").contains("malformed mountinfo line"));
    }

    #[test]
    fn reads_own_root() {
        let all = read().unwrap();
        assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
