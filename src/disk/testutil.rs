//! Test-only helpers for the disk tests: sparse scratch images, loop devices
//! over them, and reading `blkid` results.
//!
//! These tests need root (loop devices, mkfs, mount); CI runs them as root.

use std::collections::HashMap;
use std::path::Path;

use super::loopdev::LoopDevice;

/// A sparse temporary file of `size` bytes.
pub fn scratch_image(size: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("creating a scratch image");
    f.as_file().set_len(size).expect("sizing the scratch image");
    f
}

/// A scratch image of `size` bytes with a writable loop device over it. The
/// loop device is declared first so it is dropped (detached) before the
/// image is deleted.
pub struct ScratchDisk {
    pub lo: LoopDevice,
    pub image: tempfile::NamedTempFile,
}

impl ScratchDisk {
    pub fn new(size: u64) -> Self {
        let image = scratch_image(size);
        let lo = LoopDevice::attach(image.path(), 0, 0, false).expect("attaching a loop device");
        Self { lo, image }
    }

    pub fn dev(&self) -> &Path {
        self.lo.path()
    }
}

/// `blkid -p -o export PATH` (low-level probe of the content, no cache) as
/// a map.
pub fn blkid(path: &Path) -> HashMap<String, String> {
    let out = crate::util::command::run(
        "blkid",
        &[
            std::ffi::OsStr::new("-p"),
            "-o".as_ref(),
            "export".as_ref(),
            path.as_os_str(),
        ],
    )
    .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run a shell command line for test setup, panicking with its output on
/// failure.
pub fn sh(script: &str) -> String {
    crate::util::command::run("sh", &["-c", script]).unwrap_or_else(|e| panic!("{e:#}"))
}
