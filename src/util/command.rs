//! The one place cbootc runs external programs.
//!
//! Some jobs belong to the distribution's own tools (`mkfs.ext4`,
//! `grub-mkstandalone`): re-implementing them would drift from what the
//! distribution boots with. Every such call goes through [`run`], so that a
//! failure always names the program, its arguments and what it printed.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Run `program args…`, wait for it, and fail with its stderr if it fails.
///
/// Returns its standard output. Standard input is closed so that a tool that
/// unexpectedly prompts fails instead of hanging.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(&mut cmd)
}

/// Like [`run`], for a [`Command`] the caller has prepared (environment,
/// working directory, `chroot` prefix).
pub fn run_command(cmd: &mut Command) -> Result<String> {
    let shown = describe(cmd);
    tracing::debug!("running {shown}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let detail = if stderr.is_empty() {
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        } else {
            stderr.to_string()
        };
        bail!("{shown} failed ({}): {detail}", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("{shown} printed non-UTF-8 output"))
}

/// Whether `program` can be found on `$PATH`.
pub fn exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Where external programs come from.
///
/// A disk must not mix the host's and the image's bootloader or filesystem
/// tool versions, so install runs `mkfs.*` and `grub-mkstandalone` from the
/// image being installed (chrooted into its mounted root) and only falls back
/// to the host's copy when the image has none.
pub trait Tools {
    /// A command that runs `program` from this tool root.
    fn command(&self, program: &str) -> Result<Command>;
    /// A scratch directory both sides can use: (path as seen by cbootc,
    /// path as seen by the program).
    fn scratch(&self) -> (&std::path::Path, &std::path::Path);
}

/// A private (0700) work directory in `tools`' scratch space, removed when
/// dropped, and the same directory as the tools see it.
pub fn work_dir(tools: &dyn Tools, what: &str) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (scratch, tool_scratch) = tools.scratch();
    let work = tempfile::Builder::new()
        .prefix(&format!("cbootc-{what}-"))
        .tempdir_in(scratch)
        .with_context(|| format!("creating a work directory in {}", scratch.display()))?;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", work.path().display()))?;
    let name = work
        .path()
        .file_name()
        .context("work directory has no name")?;
    let tool_work = tool_scratch.join(name);
    Ok((work, tool_work))
}

/// The tools of the system cbootc itself runs on.
#[derive(Debug)]
pub struct HostTools {
    scratch: tempfile::TempDir,
}

impl HostTools {
    /// Host tools with a fresh scratch directory under `$TMPDIR`.
    pub fn new() -> Result<Self> {
        Ok(Self {
            scratch: tempfile::tempdir().context("creating a scratch directory")?,
        })
    }
}

impl Tools for HostTools {
    fn command(&self, program: &str) -> Result<Command> {
        Ok(Command::new(program))
    }
    fn scratch(&self) -> (&std::path::Path, &std::path::Path) {
        (self.scratch.path(), self.scratch.path())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_returns_stdout() {
        assert_eq!(run("echo", &["hello"]).unwrap(), "hello\n");
    }

    #[test]
    fn failure_names_program_and_stderr() {
        let err = run("sh", &["-c", "echo broken >&2; exit 3"]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("broken"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }

    #[test]
    fn missing_program_is_an_error() {
        let err = run("cbootc-no-such-program", &[] as &[&str]).unwrap_err();
        assert!(format!("{err:#}").contains("cannot run cbootc-no-such-program"));
    }

    #[test]
    fn exists_finds_sh() {
        assert!(exists("sh"));
        assert!(!exists("cbootc-no-such-program"));
    }
}
