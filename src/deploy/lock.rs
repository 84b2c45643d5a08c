//! One cbootc at a time: the daily timer's upgrade and a manual command
//! must never both change the deployments.
//!
//! An exclusive `flock(2)` on `/run/cbootc.lock`, taken without waiting: a
//! second command exits at once with a message naming the holder's pid, and
//! the timer simply tries again next time. `flock` is released by the kernel
//! when the process dies, so a crash never leaves a stale lock; the pid in
//! the file is only for the message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Take the lock in `run_dir`, or fail saying who holds it.
    pub fn acquire(run_dir: &Path) -> Result<Lock> {
        let path = run_dir.join("cbootc.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                bail!(
                    "another cbootc command is running (pid {}); try again when it has finished",
                    if holder.is_empty() { "unknown" } else { holder }
                );
            }
            Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(Lock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path()).unwrap();
        let err = Lock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another cbootc command is running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        Lock::acquire(dir.path()).unwrap();
    }
}
