//! Shared helpers for the integration tests: building test images, running
//! the real `cbootc` binary, and inspecting its disks with independent tools
//! (sfdisk, mtools, losetup, mount, grub-editenv).

#![allow(dead_code)]

pub mod host;
pub mod oci;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use composefs::erofs::format::FormatVersion;
use composefs::fsverity::{Algorithm, FsVerityHashValue, Sha512HashValue};
use composefs::repository::{Repository, RepositoryConfig};
use composefs_boot::BootOps;
use composefs_oci::{OciImage, OciTransformOptions, PullOptions};
use rustix::fs::CWD;

/// The cbootc under test: `$CBOOTC_TEST_BIN` when set (`tests/run-all.sh`
/// points it at a release build while the test harnesses stay debug builds),
/// else the one cargo built with this test.
pub fn cbootc_bin() -> PathBuf {
    std::env::var_os("CBOOTC_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cbootc")))
}

/// Run `cbootc ARGS…` and return its output.
pub fn cbootc(args: &[&str]) -> Output {
    cbootc_env(args, &[])
}

/// Like [`cbootc`], with extra environment variables.
pub fn cbootc_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(cbootc_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("CBOOTC_CONTAINERENV", "/nonexistent/.containerenv")
        .output()
        .expect("running cbootc")
}

/// Like [`cbootc`], asserting success and echoing its log.
pub fn cbootc_ok(args: &[&str]) -> Output {
    cbootc_env_ok(args, &[])
}

/// Like [`cbootc_env`], asserting success and echoing its log.
pub fn cbootc_env_ok(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let out = cbootc_env(args, env);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "cbootc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a program and return stdout, panicking with its stderr on failure.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests install to loop devices and must run as root"
    );
}

/// The bootable image id of `oci_ref`, computed with the composefs crates
/// alone (create_filesystem + transform_for_boot + compute_image_id, the
/// same steps as `cfsctl oci compute-id --bootable`), not through cbootc.
pub fn independent_boot_id(oci_ref: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = Repository::<Sha512HashValue>::init_path(
        CWD,
        dir.path().join("repo"),
        RepositoryConfig::new(Algorithm::SHA512).set_insecure(),
    )
    .unwrap();
    let repo = Arc::new(repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(composefs_oci::pull(
            &repo,
            oci_ref,
            None,
            PullOptions::default(),
        ))
        .unwrap();
    let img = OciImage::open(&repo, &r.manifest_digest, None).unwrap();
    let mut fs = composefs_oci::image::create_filesystem(
        &repo,
        img.config_digest(),
        Some(img.config_verity()),
        &OciTransformOptions::default(),
    )
    .unwrap();
    fs.transform_for_boot(&repo).unwrap();
    fs.compute_image_id(FormatVersion::V1).to_hex()
}

/// A partition as `sfdisk --json` reports it.
#[derive(Debug, Clone)]
pub struct Part {
    pub start: u64,
    pub size: u64,
    pub type_guid: String,
    pub uuid: String,
    pub name: String,
}

impl Part {
    pub fn offset(&self) -> u64 {
        self.start * 512
    }
    pub fn bytes(&self) -> u64 {
        self.size * 512
    }
}

pub fn partitions(disk: &Path) -> Vec<Part> {
    let json: serde_json::Value =
        serde_json::from_str(&sh("sfdisk", &["--json", disk.to_str().unwrap()])).unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "gpt");
    table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Part {
            start: p["start"].as_u64().unwrap(),
            size: p["size"].as_u64().unwrap(),
            type_guid: p["type"].as_str().unwrap().to_uppercase(),
            uuid: p["uuid"].as_str().unwrap().to_uppercase(),
            name: p["name"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A disk's FAT ESP, read and written with mtools (`DISK@@OFFSET`: this
/// machine cannot mount vfat).
pub struct Esp {
    image: String,
}

impl Esp {
    /// Partition `part` of `disk`.
    pub fn new(disk: &Path, part: &Part) -> Self {
        Self {
            image: format!("{}@@{}", disk.display(), part.offset()),
        }
    }

    /// The first partition of `disk` (cbootc's ESP).
    pub fn of(disk: &Path) -> Self {
        let parts = partitions(disk);
        assert_eq!(parts[0].name, "ESP");
        Self::new(disk, &parts[0])
    }

    /// Run an mtools program on the ESP; its stdout.
    fn mtool(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("-i").arg(&self.image).env("MTOOLS_SKIP_CHECK", "1");
        cmd
    }

    /// A file's content.
    pub fn read(&self, path: &str) -> Vec<u8> {
        self.mtool("mtype", &[&format!("::{path}")])
    }

    /// Copy a file out (binary-safe) to `dest`.
    pub fn get(&self, path: &str, dest: &Path) {
        self.mtool("mcopy", &["-n", &format!("::{path}"), path_str(dest)]);
    }

    /// Copy everything on the ESP into the directory `dest`.
    pub fn get_all(&self, dest: &Path) {
        self.mtool("mcopy", &["-s", "-n", "::*", path_str(dest)]);
    }

    /// Copy the local file `src` to `path`, replacing it.
    pub fn put(&self, src: &Path, path: &str) {
        self.mtool("mcopy", &["-o", path_str(src), &format!("::{path}")]);
    }

    pub fn exists(&self, path: &str) -> bool {
        self.command("mdir")
            .args(["-b", &format!("::{path}")])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Names in a directory of the ESP.
    pub fn ls(&self, path: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.mtool("mdir", &["-b", &format!("::{path}")]))
            .lines()
            .map(|l| {
                l.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// A partition of a disk image on a loop device (losetup), mounted at
/// `mountpoint`; unmounted and detached on drop.
pub struct LoopMount {
    mountpoint: PathBuf,
    loopdev: String,
}

impl LoopMount {
    pub fn new(disk: &Path, part: &Part, mountpoint: &Path, read_only: bool) -> Self {
        let (offset, size) = (part.offset().to_string(), part.bytes().to_string());
        let mut args = vec!["--find", "--show"];
        if read_only {
            args.push("--read-only");
        }
        args.extend(["--offset", &offset, "--sizelimit", &size, path_str(disk)]);
        let loopdev = sh("losetup", &args).trim().to_string();
        let mut mount = Command::new("mount");
        if read_only {
            mount.args(["-o", "ro"]);
        }
        let m = mount.arg(&loopdev).arg(mountpoint).output().unwrap();
        if !m.status.success() {
            let _ = Command::new("losetup").args(["-d", &loopdev]).status();
            panic!("mount {loopdev}: {}", String::from_utf8_lossy(&m.stderr));
        }
        LoopMount {
            mountpoint: mountpoint.to_owned(),
            loopdev,
        }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

/// A partition loop-mounted read-only in a temporary directory.
pub struct Mounted {
    // Unmounted before the directory goes.
    _mount: LoopMount,
    pub dir: tempfile::TempDir,
}

impl Mounted {
    pub fn new(disk: &Path, part: &Part) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Mounted {
            _mount: LoopMount::new(disk, part, dir.path(), true),
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// sha256 of a file's content.
pub fn file_sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cbootc-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn pathbuf(p: &str) -> PathBuf {
    PathBuf::from(p)
}
