//! Helpers for the UKI / systemd-boot / Secure Boot checks in tests/uki.rs:
//! the Debian trixie test image's root file system (for its ukify, sbsign,
//! systemd-boot, shim and bootctl), a [`Tools`] that runs programs chrooted
//! into it, ESP editing with mtools, and a QEMU/OVMF runner that talks to
//! the guest's autologin serial console.
//!
//! The image is the one tests/images/build-debian.sh writes
//! (`/var/tmp/cbootc-oci/debian`, tag v1; override with CBOOTC_TEST_OCI and
//! CBOOTC_TEST_OCI_TAG) or
//! an already extracted root in CBOOTC_TEST_ROOTFS.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cbootc::util::command::Tools;

use super::sh;

/// The test image's OCI layout and tag.
pub fn oci_layout() -> (PathBuf, String) {
    let dir =
        std::env::var("CBOOTC_TEST_OCI").unwrap_or_else(|_| "/var/tmp/cbootc-oci/debian".into());
    let tag = std::env::var("CBOOTC_TEST_OCI_TAG").unwrap_or_else(|_| "v1".into());
    (PathBuf::from(dir), tag)
}

/// `oci:DIR:v1`.
pub fn oci_ref() -> String {
    let (dir, tag) = oci_layout();
    format!("oci:{}:{tag}", dir.display())
}

/// The extracted root file system of the test image (extracted once per
/// image manifest under /var/tmp/cbootc-test-rootfs/).
pub fn trixie_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Ok(r) = std::env::var("CBOOTC_TEST_ROOTFS") {
            return PathBuf::from(r);
        }
        let (dir, tag) = oci_layout();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; build it with tests/images/build-debian.sh or set CBOOTC_TEST_ROOTFS",
                    dir.display()
                )
            }))
            .unwrap();
        let manifest = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
            .expect("tag in index.json");
        let digest = manifest["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let root = PathBuf::from(format!("/var/tmp/cbootc-test-rootfs/{}", &digest[..16]));
        if root.join(".cbootc-complete").exists() {
            return root;
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let blob = |d: &str| {
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(manifest["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        for layer in m["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
            let b = blob(layer["digest"].as_str().unwrap());
            sh(
                "tar",
                &[
                    "-xpf",
                    b.to_str().unwrap(),
                    "--numeric-owner",
                    "-C",
                    root.to_str().unwrap(),
                ],
            );
        }
        std::fs::write(root.join(".cbootc-complete"), b"").unwrap();
        root
    })
    .clone()
}

/// Runs programs chrooted into a root directory; scratch space is a fresh
/// directory under its /tmp.
pub struct ChrootTools {
    root: PathBuf,
    scratch: tempfile::TempDir,
    tool_scratch: PathBuf,
}

impl ChrootTools {
    pub fn new(root: &Path) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("cbootc-scratch-")
            .tempdir_in(root.join("tmp"))
            .unwrap();
        let tool_scratch = Path::new("/tmp").join(scratch.path().file_name().unwrap());
        Self {
            root: root.to_path_buf(),
            scratch,
            tool_scratch,
        }
    }
}

impl Tools for ChrootTools {
    fn command(&self, program: &str) -> Result<Command> {
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root).arg(program);
        Ok(cmd)
    }
    fn scratch(&self) -> (&Path, &Path) {
        (self.scratch.path(), &self.tool_scratch)
    }
}

/// The ESP of a cbootc disk, edited with mtools.
pub struct Esp {
    image: String,
}

impl Esp {
    /// The first partition of `disk` (cbootc's ESP).
    pub fn of(disk: &Path) -> Self {
        let parts = super::partitions(disk);
        assert_eq!(parts[0].name, "ESP");
        Self {
            image: format!("{}@@{}", disk.display(), parts[0].offset()),
        }
    }

    fn mtool(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .arg("-i")
            .arg(&self.image)
            .args(args)
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn get(&self, path: &str, dest: &Path) {
        self.mtool(
            "mcopy",
            &["-n", &format!("::{path}"), dest.to_str().unwrap()],
        );
    }

    pub fn read(&self, path: &str) -> Vec<u8> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        self.get(path, &p);
        std::fs::read(p).unwrap()
    }

    pub fn exists(&self, path: &str) -> bool {
        Command::new("mdir")
            .args(["-b", "-i", &self.image, &format!("::{path}")])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap()
            .status
            .success()
    }

    pub fn delete(&self, path: &str) {
        self.mtool("mdel", &[&format!("::{path}")]);
    }

    pub fn delete_tree(&self, path: &str) {
        self.mtool("mdeltree", &[&format!("::{path}")]);
    }

    /// Copy the content of local directory `dir` into the ESP root,
    /// overwriting files.
    pub fn put_tree(&self, dir: &Path) {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path().to_str().unwrap().to_string())
            .collect();
        let mut args = vec!["-s", "-o", "-D", "o"];
        args.extend(entries.iter().map(String::as_str));
        args.push("::/");
        self.mtool("mcopy", &args);
    }

    /// Names in an ESP directory.
    pub fn ls(&self, path: &str) -> Vec<String> {
        self.mtool("mdir", &["-b", &format!("::{path}")])
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

/// OVMF firmware images (Debian package ovmf).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Variables with Microsoft's KEK and db (UEFI CA 2011, Windows PCA 2011)
/// enrolled and Secure Boot enabled.
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// Firmware for one VM: code image, a writable VARS file, and whether the
/// Secure Boot machine setup (SMM, secure flash) is needed.
pub struct Firmware {
    pub code: &'static str,
    pub vars: PathBuf,
    pub secure: bool,
}

/// A running QEMU whose serial console is piped; killed when dropped.
pub struct Guest {
    child: Child,
    stdin: ChildStdin,
    buf: Arc<Mutex<Vec<u8>>>,
    pub started: Instant,
    pub command_line: String,
}

/// Serial text that means the boot has failed; waiting stops at once.
const FAILURES: &[&str] = &[
    "Kernel panic",
    "Security Violation",
    "Access Denied",
    "You are in emergency mode",
    "Failed to start composefs",
    "Verification failed",
    "Error loading",
];

impl Guest {
    pub fn start(disk: &Path, fw: &Firmware, log: &Path) -> Self {
        let mut args: Vec<String> = vec!["-accel".into(), "tcg".into(), "-machine".into()];
        args.push(if fw.secure { "q35,smm=on" } else { "q35" }.into());
        if fw.secure {
            args.extend(
                ["-global", "driver=cfi.pflash01,property=secure,value=on"].map(String::from),
            );
        }
        args.extend(["-cpu", "qemu64", "-smp", "2", "-m", "2048", "-drive"].map(String::from));
        args.push(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            fw.code
        ));
        args.push("-drive".into());
        args.push(format!(
            "if=pflash,format=raw,unit=1,file={}",
            fw.vars.display()
        ));
        args.push("-drive".into());
        args.push(format!("if=virtio,format=raw,file={}", disk.display()));
        args.extend(
            [
                "-device",
                "virtio-rng-pci",
                "-nic",
                "none",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ]
            .map(String::from),
        );
        let command_line = format!("qemu-system-x86_64 {}", args.join(" "));
        eprintln!("+ {command_line}");
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting qemu-system-x86_64");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let mut logf = std::fs::File::create(log).unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let _ = logf.write_all(&chunk[..n]);
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            child,
            stdin,
            buf,
            started: Instant::now(),
            command_line,
        }
    }

    /// Everything the serial console printed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Wait until the console shows `pat` after byte `from`; returns the
    /// seconds since QEMU started.
    pub fn wait_for_from(&mut self, from: usize, pat: &str, timeout: Duration) -> Result<f64> {
        let end = Instant::now() + timeout;
        loop {
            let text = {
                let b = self.buf.lock().unwrap();
                String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned()
            };
            if text.contains(pat) {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if let Some(f) = FAILURES.iter().find(|f| text.contains(*f)) {
                std::thread::sleep(Duration::from_secs(2));
                bail!(
                    "boot failed ({f:?}) before {pat:?}; console:\n{}",
                    self.text()
                );
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "qemu exited ({status}) before {pat:?}; console:\n{}",
                    self.text()
                );
            }
            if Instant::now() > end {
                bail!("timed out waiting for {pat:?}; console:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Result<f64> {
        self.wait_for_from(0, pat, timeout)
    }

    /// Wait for the autologin shell prompt.
    pub fn wait_for_shell(&mut self) -> Result<f64> {
        self.wait_for("root@cbootc-test", Duration::from_secs(600))
    }

    /// Run `script` in the guest shell and return what it printed between
    /// two markers.
    pub fn run(&mut self, script: &str) -> Result<String> {
        let from = self.buf.lock().unwrap().len();
        // The markers are assembled by the shell, so the echoed command
        // line itself does not match them.
        writeln!(
            self.stdin,
            "echo CBOOTC-BE''GIN; {script}; echo CBOOTC-E''ND"
        )?;
        self.stdin.flush()?;
        self.wait_for_from(from, "CBOOTC-END", Duration::from_secs(300))?;
        let text = {
            let b = self.buf.lock().unwrap();
            String::from_utf8_lossy(&b[from..]).into_owned()
        };
        let start = text.find("CBOOTC-BEGIN").context("begin marker")? + "CBOOTC-BEGIN".len();
        let end = text.rfind("CBOOTC-END").context("end marker")?;
        Ok(text[start..end].replace('\r', "").trim().to_string())
    }

    /// `poweroff` and wait for QEMU to exit.
    pub fn poweroff(mut self) -> Result<f64> {
        writeln!(self.stdin, "poweroff")?;
        self.stdin.flush()?;
        let end = Instant::now() + Duration::from_secs(180);
        while Instant::now() < end {
            if self.child.try_wait()?.is_some() {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("guest did not power off")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell snippet printing the one data byte of the guest's `SecureBoot`
/// variable as `SB=<n>`.
pub const SECURE_BOOT_PROBE: &str = "echo SB=$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | awk '{print $NF}')";

/// A shell snippet printing a systemd boot loader variable (ASCII UTF-16
/// value) as `NAME=<value>`.
pub fn loader_var_probe(name: &str) -> String {
    format!(
        "echo {name}=$(cat /sys/firmware/efi/efivars/{name}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f 2>/dev/null | tail -c +5 | tr -d '\\000')"
    )
}

/// Where a test's serial console log goes: CBOOTC_TEST_LOGS, else
/// /var/tmp/cbootc-test-uki-logs (kept after the test, for the report and
/// for debugging a failed boot).
pub fn log_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("CBOOTC_TEST_LOGS")
            .unwrap_or_else(|_| "/var/tmp/cbootc-test-uki-logs".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Copy a firmware VARS template to `dest`.
pub fn vars_copy(template: &str, dest: &Path) -> PathBuf {
    std::fs::copy(template, dest)
        .unwrap_or_else(|e| panic!("{template}: {e} (apt-get install ovmf)"));
    dest.to_path_buf()
}

/// Install the test image with cbootc (GRUB layout) to `dir/disk.raw`.
pub fn grub_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.raw");
    let t = Instant::now();
    super::cbootc_ok(&[
        "install",
        "to-disk",
        "--source",
        &oci_ref(),
        "--size",
        "4G",
        "--karg",
        "console=ttyS0",
        "--karg",
        "systemd.gpt_auto=0",
        disk.to_str().unwrap(),
    ]);
    eprintln!("install to-disk took {:.1} s", t.elapsed().as_secs_f64());
    disk
}
