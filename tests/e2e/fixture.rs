//! What the boot tests share: paths, the cbootc binary, the Debian test
//! image (built once per run), the installs, timings, and the wrapper that
//! turns an error into a test failure with the console's tail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::common;
use crate::vm::{self, Drive, Format, Vm, VmSpec};

/// Kernel arguments of every test install: the serial console the harness
/// drives; no gpt-auto (the ESP fsck and device wait cost ~10 s under TCG);
/// a kernel oops panics and a panic reboots, which ends QEMU (-no-reboot),
/// so a crashed guest fails fast instead of timing out.
pub const KARGS: &[&str] = &[
    "console=ttyS0",
    "systemd.gpt_auto=0",
    "oops=panic",
    "panic=-1",
];

const GIB: f64 = (1u64 << 30) as f64;

/// Size of every installed disk.
pub const DISK_SIZE: &str = "4G";

/// The image in the host's containers-storage for the podman install.
pub const PODMAN_IMAGE: &str = "localhost/cbootc-debian:e2e";

/// Boot limits, generous for TCG on 2 busy cores (a boot takes 45–90 s).
pub fn boot_timeout() -> Duration {
    secs_from_env("CBOOTC_E2E_BOOT_TIMEOUT", 600)
}

fn secs_from_env(var: &str, default: u64) -> Duration {
    let s = std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{var}={v:?} is not a number of seconds"))
        })
        .unwrap_or(default);
    Duration::from_secs(s)
}

pub struct Env {
    pub repo: PathBuf,
    /// Disks, overlays and the image layout.
    pub work: PathBuf,
    /// Console logs, install logs, timings: kept as CI artifacts.
    pub logs: PathBuf,
    /// The cbootc that installs, and that goes into the image.
    pub cbootc: PathBuf,
    pub cbootc_sha256: String,
    pub cbootc_version: String,
}

/// Paths: `CBOOTC_E2E_WORK` (default `target/e2e`), `CBOOTC_E2E_LOGS`
/// (default `target/e2e-logs`); `CBOOTC_TEST_BIN` (default: the cbootc
/// built with this test, i.e. the same cargo profile).
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // target/tmp -> target
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .to_owned();
        let work = std::env::var_os("CBOOTC_E2E_WORK")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("e2e"));
        let logs = std::env::var_os("CBOOTC_E2E_LOGS")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("e2e-logs"));
        let cbootc = crate::common::cbootc_bin();
        let cbootc = std::fs::canonicalize(&cbootc)
            .unwrap_or_else(|e| panic!("cbootc binary {}: {e}", cbootc.display()));
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        let _ = std::fs::remove_file(logs.join("timings.txt"));
        let version = Command::new(&cbootc).arg("--version").output().unwrap();
        assert!(
            version.status.success(),
            "{} --version failed",
            cbootc.display()
        );
        eprintln!(
            "e2e: cbootc {} ({})",
            cbootc.display(),
            String::from_utf8_lossy(&version.stdout).trim()
        );
        Env {
            repo,
            work,
            logs,
            cbootc_sha256: common::file_sha256(&cbootc),
            cbootc,
            cbootc_version: String::from_utf8_lossy(&version.stdout).trim().to_owned(),
        }
    })
}

/// Record a duration in the test output and in `LOGS/timings.txt`.
pub fn timing(label: &str, d: Duration) {
    let line = format!("{label}: {:.1} s", d.as_secs_f64());
    eprintln!("e2e: {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env().logs.join("timings.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Run a program on the host, killed after `limit` (`timeout(1)`); its
/// stdout+stderr go to `LOGS/<log>` and, on failure, into the error.
pub fn host(
    log: &str,
    limit: Duration,
    program: &str,
    args: &[&str],
    envs: &[(&str, &Path)],
) -> Result<String> {
    let path = env().logs.join(log);
    let t0 = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=30", &format!("{}s", limit.as_secs()), program])
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {program} (run tests/e2e/setup-host.sh?)"))?;
    let mut f = std::fs::File::create(&path)?;
    writeln!(f, "$ {program} {}", args.join(" "))?;
    f.write_all(&out.stderr)?;
    f.write_all(&out.stdout)?;
    writeln!(
        f,
        "# {} after {:.1} s",
        out.status,
        t0.elapsed().as_secs_f64()
    )?;
    if out.status.code() == Some(124) {
        bail!(
            "{program} {} did not finish within {} s; log {}",
            args.join(" "),
            limit.as_secs(),
            path.display()
        );
    }
    if !out.status.success() {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        bail!(
            "{program} {} failed ({}); log {}:\n{}",
            args.join(" "),
            out.status,
            path.display(),
            vm::tail_text(&all, 40)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian test image, built from this tree by build-debian.sh with the
/// cbootc under test.
pub struct Image {
    pub layout: PathBuf,
    pub tag: String,
    /// `oci:LAYOUT:TAG`
    pub imgref: String,
    /// The composefs id of its bootable image, computed with the composefs
    /// crates alone (not cbootc): every install of it must boot this id.
    pub id: String,
}

pub fn image() -> Result<&'static Image> {
    static IMAGE: OnceLock<std::result::Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_image("v1", "e2e").map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("building the test image failed: {e}"))
}

/// v2 of the test image (`build-debian.sh --variant v2`: v1 + one layer
/// with /usr/lib/cbootc-test-version = v2), tagged `e2e-v2` in v1's layout;
/// built once per run for the tests that upgrade to it.
pub fn image_v2() -> Result<&'static Image> {
    static IMAGE: OnceLock<std::result::Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_v2().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("building the v2 test image failed: {e}"))
}

fn build_v2() -> Result<Image> {
    let v1 = image()?;
    let v2 = build_image("v2", "e2e-v2")?;
    anyhow::ensure!(v2.id != v1.id, "v2 has the composefs id of v1 ({})", v1.id);
    Ok(v2)
}

fn build_image(variant: &str, tag: &str) -> Result<Image> {
    let env = env();
    let layout = env.work.join("oci");
    let script = env.repo.join("tests/images/build-debian.sh");
    eprintln!("e2e: building the Debian test image {variant} (cold: ~5 min; cached: seconds)");
    let t0 = Instant::now();
    let out = host(
        &format!("image-build-{variant}.log"),
        Duration::from_secs(2400),
        script.to_str().unwrap(),
        &[
            "--cbootc",
            env.cbootc.to_str().unwrap(),
            "--out",
            layout.to_str().unwrap(),
            "--variant",
            variant,
            "--tag",
            tag,
        ],
        &[],
    )?;
    timing(
        &format!("image build {variant} (build-debian.sh)"),
        t0.elapsed(),
    );
    let imgref = out.lines().last().unwrap_or_default().trim().to_owned();
    let want = format!("oci:{}:{tag}", layout.display());
    if imgref != want {
        bail!("build-debian.sh printed {imgref:?}, expected {want:?}");
    }
    let t0 = Instant::now();
    let id = common::independent_boot_id(&imgref);
    timing(
        &format!("expected composefs id of {variant} (composefs crates)"),
        t0.elapsed(),
    );
    eprintln!("e2e: image {imgref}, composefs id {id}");
    Ok(Image {
        layout,
        tag: tag.into(),
        imgref,
        id,
    })
}

/// Files of the running test that no later test reads (its disks, overlays,
/// VARS copies): removed when the test ends, passed or failed, so the
/// suite's peak disk use is the shared files plus one test's, not the sum
/// of all tests. A CI run once filled its machine's disk this way: the
/// installs after that failed with ENOSPC. `CBOOTC_E2E_KEEP=1` keeps
/// them for debugging; logs are always kept.
static AT_END: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove `path` (a file or a directory) when the current test ends.
pub fn remove_at_end(path: &Path) {
    AT_END
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_owned());
}

fn remove_test_files() {
    let paths = std::mem::take(&mut *AT_END.lock().unwrap_or_else(|e| e.into_inner()));
    if std::env::var_os("CBOOTC_E2E_KEEP").is_some_and(|v| v == "1") {
        return;
    }
    for p in paths {
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(e) = gone
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("e2e: cannot remove {}: {e}", p.display());
        }
    }
}

/// Bytes free for unprivileged use on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(st.f_bavail * st.f_frsize)
}

/// Free space below which a test does not start: the largest test's files
/// take 4.25 GB (DESIGN.md "Boot tests", disk space); a boot that meets a
/// full disk fails in confusing ways.
const MIN_FREE: u64 = 5 << 30;

/// An installed disk: pristine, only ever booted through overlays.
pub struct Installed {
    pub disk: PathBuf,
    /// cbootc's log (stderr).
    pub log: String,
}

fn kargs() -> Vec<&'static str> {
    KARGS.iter().flat_map(|k| ["--karg", k]).collect()
}

/// `cbootc install to-disk --source oci:… DISK --size 4G --karg … EXTRA…`
/// with the host's cbootc, into `WORK/disks/NAME.raw` (and `.sb.cer`),
/// removed when the test ends.
pub fn install(name: &str, extra: &[&str]) -> Result<Installed> {
    let inst = install_kept(name, extra)?;
    remove_at_end(&inst.disk);
    remove_at_end(&sb_cert(&inst.disk));
    Ok(inst)
}

/// `DISK.sb.cer`, written by `install to-disk --secure-boot --uki`.
pub fn sb_cert(disk: &Path) -> PathBuf {
    let mut s = disk.as_os_str().to_owned();
    s.push(".sb.cer");
    PathBuf::from(s)
}

/// [`install`], kept for the whole run (shared by several tests).
fn install_kept(name: &str, extra: &[&str]) -> Result<Installed> {
    let env = env();
    let img = image()?;
    let dir = env.work.join("disks");
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join(format!("{name}.raw"));
    let _ = std::fs::remove_file(&disk);
    let mut args = vec!["install", "to-disk", "--source", &img.imgref];
    args.push(disk.to_str().unwrap());
    args.extend(["--size", DISK_SIZE]);
    args.extend(kargs());
    args.extend(extra);
    let t0 = Instant::now();
    host(
        &format!("{name}-install.log"),
        Duration::from_secs(900),
        env.cbootc.to_str().unwrap(),
        &args,
        &[],
    )?;
    timing(&format!("{name}: cbootc install to-disk"), t0.elapsed());
    let log = std::fs::read_to_string(env.logs.join(format!("{name}-install.log")))?;
    Ok(Installed { disk, log })
}

/// The ext4 install (verity `auto`, i.e. optional on a host kernel without
/// fs-verity), shared by the tests that boot it.
pub fn ext4_install() -> Result<&'static Installed> {
    static EXT4: OnceLock<std::result::Result<Installed, String>> = OnceLock::new();
    EXT4.get_or_init(|| install_kept("ext4", &[]).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the ext4 install failed: {e}"))
}

/// The install exactly as README tells users: the image in the host's
/// containers-storage, cbootc run inside it by privileged podman, no
/// `--source` (cbootc reads /run/.containerenv).
pub fn podman_install(name: &str) -> Result<Installed> {
    let env = env();
    let img = image()?;
    let conf = env.repo.join("tests/e2e/containers.conf");
    let cenv: &[(&str, &Path)] = &[("CONTAINERS_CONF", &conf)];
    let t0 = Instant::now();
    // Replace the previous run's image (same name) rather than leave it
    // dangling; the base layer is shared, so this is cheap.
    let _ = host(
        &format!("{name}-podman-rmi.log"),
        Duration::from_secs(300),
        "podman",
        &["rmi", "--force", PODMAN_IMAGE],
        cenv,
    );
    host(
        &format!("{name}-skopeo.log"),
        Duration::from_secs(600),
        "skopeo",
        &[
            "copy",
            "--quiet",
            &img.imgref,
            &format!("containers-storage:{PODMAN_IMAGE}"),
        ],
        cenv,
    )?;
    timing(
        &format!("{name}: skopeo copy into containers-storage"),
        t0.elapsed(),
    );

    let out = env.work.join(format!("{name}-output"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    remove_at_end(&out);
    let output_mount = format!("{}:/output", out.display());
    let mut args = vec![
        "run",
        "--rm",
        "--privileged",
        "-v",
        "/var/lib/containers:/var/lib/containers",
        "-v",
        &output_mount,
        PODMAN_IMAGE,
        "cbootc",
        "install",
        "to-disk",
        "/output/disk.raw",
        "--size",
        DISK_SIZE,
    ];
    args.extend(kargs());
    let t0 = Instant::now();
    host(
        &format!("{name}-install.log"),
        Duration::from_secs(900),
        "podman",
        &args,
        cenv,
    )?;
    timing(
        &format!("{name}: podman run … cbootc install to-disk"),
        t0.elapsed(),
    );
    let log = std::fs::read_to_string(env.logs.join(format!("{name}-install.log")))?;
    Ok(Installed {
        disk: out.join("disk.raw"),
        log,
    })
}

/// An ext4 filesystem image holding the OCI layout, for a guest to install
/// from (the guest kernel has neither 9p nor virtiofs).
pub fn layout_disk() -> Result<PathBuf> {
    let env = env();
    let img = image()?;
    let path = env.work.join("disks/oci-layout.ext4");
    let _ = std::fs::remove_file(&path);
    let bytes = dir_size(&img.layout)?;
    let mib = (bytes + bytes / 4) / (1 << 20) + 64;
    let t0 = Instant::now();
    host(
        "oci-layout-disk.log",
        Duration::from_secs(600),
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "^has_journal",
            "-L",
            "cbootc-oci",
            "-E",
            "root_owner=0:0",
            "-d",
            img.layout.to_str().unwrap(),
            path.to_str().unwrap(),
            &format!("{mib}M"),
        ],
        &[],
    )?;
    timing("OCI layout disk (mkfs.ext4 -d)", t0.elapsed());
    Ok(path)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// One test's boots, for timings and for the console tail on failure.
pub struct Ctx {
    pub name: String,
    last_log: Option<PathBuf>,
    /// What [`Ctx::boot`] starts QEMU with (default: `-bios` OVMF).
    pub firmware: vm::Firmware,
    /// Per installed disk, the overlay the last boot of it wrote: the next
    /// boot's overlay is backed by it (see [`Ctx::boot_with`]).
    tops: Vec<(PathBuf, PathBuf)>,
}

/// What the guest kernel prints when one of its CPUs stops getting timer
/// interrupts: seen once in ~25 boots under TCG on the CI machines (CPU 1
/// idle in `hlt`, "timer wakeup didn't happen", early in the initrd), after
/// which the boot never finishes. Nothing of cbootc runs that early.
const TCG_STALL: &[&str] = &[
    "rcu_preempt detected stalls",
    "rcu_preempt self-detected stall",
    "kthread timer wakeup didn't happen",
];

impl Ctx {
    /// Boot `disk` (raw) through a new qcow2 overlay named after the boot,
    /// with `extra` drives after it, and log in. The overlay is backed by
    /// `disk` itself if `fresh_overlay` or on this test's first boot of it,
    /// else by the previous boot's overlay (a reboot of the same machine).
    pub fn boot(
        &mut self,
        boot: &str,
        disk: &Path,
        fresh_overlay: bool,
        extra: Vec<Drive>,
        memory_mib: u32,
    ) -> Result<Vm> {
        self.boot_with(boot, disk, fresh_overlay, extra, memory_mib, &[])
    }

    /// [`Ctx::boot`] with more QEMU arguments (e.g. [`vm::user_net`]).
    ///
    /// Each boot writes its own overlay, backed by the previous boot's
    /// overlay of `disk` (or by `disk`), and the VARS file is copied before
    /// it: a boot that hangs in an RCU stall of the emulator ([`TCG_STALL`])
    /// is retried once from exactly the state it started from, and the
    /// retry is reported. Any other failure fails the test.
    pub fn boot_with(
        &mut self,
        boot: &str,
        disk: &Path,
        fresh_overlay: bool,
        extra: Vec<Drive>,
        memory_mib: u32,
        qemu_args: &[String],
    ) -> Result<Vm> {
        let env = env();
        let stem = disk.file_stem().unwrap().to_string_lossy();
        let overlay = env
            .work
            .join("overlays")
            .join(format!("{}-{stem}-{boot}.qcow2", self.name));
        std::fs::create_dir_all(overlay.parent().unwrap())?;
        let top = self.tops.iter().position(|(d, _)| d == disk);
        let (backing, format) = match top {
            Some(i) if !fresh_overlay => (self.tops[i].1.clone(), Format::Qcow2),
            _ => (disk.to_owned(), Format::Raw),
        };
        remove_at_end(&overlay);
        // (VARS, its copy from before this boot)
        let vars = match &self.firmware {
            vm::Firmware::Pflash { vars, .. } => {
                let mut before = vars.clone().into_os_string();
                before.push(".before-boot");
                let before = PathBuf::from(before);
                std::fs::copy(vars, &before)
                    .with_context(|| format!("copying {}", vars.display()))?;
                remove_at_end(&before);
                Some((vars.clone(), before))
            }
            vm::Firmware::Bios => None,
        };
        let mut name = format!("{}-{boot}", self.name);
        for attempt in 1..=2 {
            vm::overlay(&backing, format, &overlay)?;
            let mut drives = vec![Drive::new(&overlay, Format::Qcow2, "system")];
            drives.extend(extra.iter().cloned());
            self.last_log = Some(env.logs.join(format!("{name}.log")));
            eprintln!(
                "e2e: booting {name} ({} disk{})",
                drives.len(),
                if drives.len() > 1 { "s" } else { "" }
            );
            let mut vm = Vm::start_with(
                &VmSpec {
                    name: name.clone(),
                    log_dir: env.logs.clone(),
                    drives,
                    memory_mib,
                },
                &self.firmware,
                qemu_args,
            )?;
            match vm.login(boot_timeout()) {
                Ok(at) => {
                    timing(&format!("{name}: QEMU start to shell"), at);
                    match top {
                        Some(i) => self.tops[i].1 = overlay,
                        None => self.tops.push((disk.to_owned(), overlay)),
                    }
                    return Ok(vm);
                }
                Err(e) => {
                    let (text, _) = vm.console();
                    let stall = TCG_STALL.iter().find(|s| text.contains(**s));
                    match stall {
                        Some(s) if attempt == 1 => {
                            eprintln!(
                                "e2e: {name}: the guest kernel stalled ({s:?}) and the boot \
                                 did not finish ({e:#}); retrying it once from the same disk \
                                 and VARS (console: {}.log)",
                                name
                            );
                            timing(
                                &format!("{name}: TCG stall, boot retried after"),
                                vm.uptime(),
                            );
                            drop(vm);
                            if let Some((v, before)) = &vars {
                                std::fs::copy(before, v)
                                    .with_context(|| format!("restoring {}", v.display()))?;
                            }
                            name = format!("{}-{boot}-retry", self.name);
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Start QEMU on `drives` (used as they are: no overlay) without
    /// waiting for anything: for boots that must not reach a shell.
    pub fn start(&mut self, boot: &str, drives: Vec<Drive>) -> Result<Vm> {
        let env = env();
        let name = format!("{}-{boot}", self.name);
        self.last_log = Some(env.logs.join(format!("{name}.log")));
        eprintln!("e2e: starting {name}");
        Vm::start_with(
            &VmSpec {
                name,
                log_dir: env.logs.clone(),
                drives,
                memory_mib: 2048,
            },
            &self.firmware,
            &[],
        )
    }

    /// `systemctl poweroff` (or `reboot`), timed.
    pub fn shutdown(&mut self, vm: Vm, verb: &str) -> Result<()> {
        let name = vm.name().to_owned();
        let up = vm.uptime();
        let took = vm.shutdown(verb, Duration::from_secs(180))?;
        timing(&format!("{name}: {verb} took"), took);
        timing(
            &format!("{name}: whole boot, QEMU start to exit"),
            up + took,
        );
        Ok(())
    }
}

/// Run one boot test: serialized (boots share 2 cores), with every error
/// turned into a panic that carries the console's tail and the log paths.
pub fn e2e(name: &str, body: impl FnOnce(&mut Ctx) -> Result<()>) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        rustix::process::geteuid().is_root(),
        "the boot tests install to loop devices and must run as root"
    );
    assert!(
        Path::new(vm::OVMF).exists(),
        "OVMF ({}) missing: run tests/e2e/setup-host.sh",
        vm::OVMF
    );
    let env = env();
    let free = free_bytes(&env.work).unwrap_or(u64::MAX);
    assert!(
        free >= MIN_FREE,
        "{name}: only {:.1} GiB free on {}; a boot test needs {} GiB",
        free as f64 / GIB,
        env.work.display(),
        MIN_FREE >> 30
    );
    let t0 = Instant::now();
    let mut ctx = Ctx {
        name: name.into(),
        last_log: None,
        firmware: vm::Firmware::default(),
        tops: Vec::new(),
    };
    let result = body(&mut ctx);
    timing(&format!("{name}: test total"), t0.elapsed());
    // What this test's files took at their peak is not observable after
    // the fact; what is left before they go is close to it.
    let before = free_bytes(&env.work).unwrap_or(0);
    remove_test_files();
    let after = free_bytes(&env.work).unwrap_or(0);
    eprintln!(
        "e2e: {name}: its files took {:.2} GiB; {:.1} GiB free on {}",
        after.saturating_sub(before) as f64 / GIB,
        after as f64 / GIB,
        env.work.display()
    );
    if let Err(e) = result {
        let mut msg = format!("{name} failed: {e:#}\n");
        if let Some(log) = &ctx.last_log {
            let text =
                String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
            msg += &format!(
                "\n--- last 60 lines of the console ({}) ---\n{}\n--- end of console ---\n",
                log.display(),
                vm::tail_text(&text, 60)
            );
        }
        msg += &format!("logs: {}", env.logs.display());
        panic!("{msg}");
    }
}
