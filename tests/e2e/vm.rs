//! A QEMU + OVMF virtual machine driven over its serial console.
//!
//! QEMU's serial port is its stdin/stdout. A reader thread appends
//! everything the guest prints to `NAME.raw.log` (bytes as received) and,
//! with ANSI/OSC escape sequences and carriage returns removed, to
//! `NAME.log` and an in-memory buffer that the waits below search.
//!
//! Commands run in the autologin root shell of the test image. Each is sent
//! on one line as `echo BEGIN-n; CMD; echo END-n=$?` with the markers
//! split by quotes (`"@@B""EGIN-n@@"`), so the terminal's echo of the typed
//! line can never look like the markers the shell prints. Nothing is typed
//! before a synchronisation round trip has succeeded (typed-ahead input can
//! be swallowed while systemd queries the serial terminal's size), and a
//! command whose shell is replaced by a new autologin (a getty hangup)
//! fails instead of waiting for its timeout.
//!
//! Every wait has a deadline; QEMU is killed when the [`Vm`] is dropped, so a
//! hung guest fails its test with the console tail and never hangs CI.
//!
//! Also compiled into `examples/vm-run.rs` (the demo), which uses part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// UEFI firmware: OVMF as one image (no persistent variables, like a fresh
/// machine; cbootc installs GRUB at the removable-media path).
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Split OVMF images (Debian package ovmf) for machines with persistent
/// variables and for Secure Boot.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Variables with Microsoft's KEK and db enrolled and Secure Boot enabled.
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// The firmware a VM starts with.
#[derive(Debug, Clone, Default)]
pub enum Firmware {
    /// [`OVMF`] with `-bios`: no persistent variables.
    #[default]
    Bios,
    /// Read-only `code` and a writable `vars` file (kept across the boots
    /// that use the same file, like a machine's NVRAM). `secure`: the
    /// Secure Boot machine setup (SMM, secure flash), needed by the
    /// `secboot` code image.
    Pflash {
        code: PathBuf,
        vars: PathBuf,
        secure: bool,
    },
}

/// The test image's shell prompt (hostname `cbootc-test`, see
/// tests/images/debian/rootfs).
const PROMPT: &str = "root@cbootc-test:";
const AUTOLOGIN: &str = "login: root (automatic login)";

/// How QEMU runs guests here.
#[derive(Debug, Clone)]
pub struct Accel {
    pub accel: &'static str,
    pub cpu: &'static str,
}

/// KVM if it demonstrably works, else TCG; `CBOOTC_E2E_ACCEL=tcg|kvm`
/// overrides. `/dev/kvm` can exist and still fail (nested virtualisation:
/// "KVM internal error … emulation failure" inside OVMF), so KVM is used
/// only after OVMF reached its boot manager under it.
pub fn accel() -> &'static Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    ACCEL.get_or_init(|| {
        const TCG: Accel = Accel {
            accel: "tcg",
            cpu: "qemu64",
        };
        const KVM: Accel = Accel {
            accel: "kvm",
            cpu: "host",
        };
        let choice = match std::env::var("CBOOTC_E2E_ACCEL").as_deref() {
            Ok("tcg") => TCG,
            Ok("kvm") => KVM,
            Ok(other) if !other.is_empty() => {
                panic!("CBOOTC_E2E_ACCEL={other}: expected tcg or kvm")
            }
            _ => match probe_kvm() {
                Ok(()) => KVM,
                Err(why) => {
                    eprintln!("vm: using TCG: {why}");
                    TCG
                }
            },
        };
        eprintln!(
            "vm: QEMU accelerator {} (-cpu {})",
            choice.accel, choice.cpu
        );
        choice
    })
}

fn probe_kvm() -> Result<()> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .context("/dev/kvm cannot be opened")?;
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256",
        ])
        .args([
            "-bios",
            OVMF,
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    // OVMF's boot manager on the console: KVM works. Anything on stderr
    // ("KVM internal error", after which QEMU just stops the guest) or
    // QEMU exiting: it does not.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let ok = tx.clone();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if find(&seen, b"BdsDxe").is_some() {
                let _ = ok.send(Ok(()));
                return;
            }
        }
        let _ = ok.send(Err("QEMU exited".to_owned()));
    });
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        if let Ok(n) = err.read(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let first = text.lines().next().unwrap_or("QEMU exited").to_owned();
            let _ = tx.send(Err(first));
        }
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| Err("no firmware output in 30 s".into()));
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|why| anyhow::anyhow!("KVM does not boot OVMF here ({why})"))
}

/// Disk image formats QEMU is told about (never probed).
#[derive(Debug, Clone, Copy)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    /// QEMU's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// A virtio disk. `serial` names it in the guest:
/// `/dev/disk/by-id/virtio-SERIAL`.
#[derive(Debug, Clone)]
pub struct Drive {
    pub path: PathBuf,
    pub format: Format,
    pub read_only: bool,
    pub serial: String,
}

impl Drive {
    pub fn new(path: &Path, format: Format, serial: &str) -> Drive {
        Drive {
            path: path.to_owned(),
            format,
            read_only: false,
            serial: serial.into(),
        }
    }

    pub fn read_only(mut self) -> Drive {
        self.read_only = true;
        self
    }
}

/// QEMU arguments for one virtio NIC on user-mode networking (slirp): DHCP
/// gives the guest 10.0.2.15, and 10.0.2.2 is the host's loopback, so a
/// server the test starts on 127.0.0.1 is reachable from the guest. No
/// option ROM (OVMF must not try to boot from the network). Not
/// `restrict=on`, which would cut off 10.0.2.2 too: the tests only ever
/// connect to 10.0.2.2.
pub fn user_net() -> Vec<String> {
    vec![
        "-netdev".into(),
        "user,id=net0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
    ]
}

/// Create a qcow2 overlay on `base` (`format`: the installed raw disk, or
/// an earlier boot's overlay) so the installed disk stays pristine; the
/// overlay is what the VM writes.
pub fn overlay(base: &Path, format: Format, overlay: &Path) -> Result<()> {
    let _ = std::fs::remove_file(overlay);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format.name(), "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .context("running qemu-img")?;
    if !out.status.success() {
        bail!(
            "qemu-img create {}: {}",
            overlay.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub struct VmSpec {
    /// Names the console logs `LOG_DIR/NAME.log` and `NAME.raw.log`.
    pub name: String,
    pub log_dir: PathBuf,
    /// The first drive is the boot disk.
    pub drives: Vec<Drive>,
    pub memory_mib: u32,
}

/// Output of one guest command.
#[derive(Debug)]
pub struct Output {
    pub rc: i32,
    /// stdout and stderr as the console showed them, `\r` removed.
    pub text: String,
}

struct Console {
    /// Cleaned console text since boot.
    text: Vec<u8>,
    exited: bool,
}

struct Shared {
    console: Mutex<Console>,
    changed: Condvar,
}

pub struct Vm {
    name: String,
    child: Child,
    stdin: ChildStdin,
    shared: Arc<Shared>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
    /// Everything before this offset in the cleaned text has been consumed.
    cursor: usize,
    seq: u32,
}

impl Vm {
    /// Start QEMU with [`Firmware::Bios`]. Returns as soon as the process
    /// runs.
    pub fn start(spec: &VmSpec) -> Result<Vm> {
        Vm::start_with(spec, &Firmware::Bios, &[])
    }

    /// Start QEMU with `firmware` and more QEMU arguments after the drives
    /// (e.g. [`user_net`]). Returns as soon as the process runs.
    pub fn start_with(spec: &VmSpec, firmware: &Firmware, extra_args: &[String]) -> Result<Vm> {
        let accel = accel();
        std::fs::create_dir_all(&spec.log_dir)?;
        let log = spec.log_dir.join(format!("{}.log", spec.name));
        let raw_log = spec.log_dir.join(format!("{}.raw.log", spec.name));
        let mut cmd = Command::new("qemu-system-x86_64");
        let secure = matches!(firmware, Firmware::Pflash { secure: true, .. });
        let machine = if secure { "q35,smm=on" } else { "q35" };
        cmd.args([
            "-accel",
            accel.accel,
            "-machine",
            machine,
            "-cpu",
            accel.cpu,
        ])
        .args(["-smp", "2", "-m", &spec.memory_mib.to_string()]);
        match firmware {
            Firmware::Bios => {
                cmd.args(["-bios", OVMF]);
            }
            Firmware::Pflash { code, vars, secure } => {
                if *secure {
                    cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
                }
                cmd.arg("-drive").arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    code.display()
                ));
                cmd.arg("-drive").arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
            }
        }
        cmd.args(["-nodefaults", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .args(["-device", "virtio-rng-pci", "-nic", "none"]);
        for (i, d) in spec.drives.iter().enumerate() {
            let format = d.format.name();
            let ro = if d.read_only { ",readonly=on" } else { "" };
            // werror=report: a full host disk becomes I/O errors on the
            // console instead of QEMU's default, a silently paused guest
            // that the harness can only time out on.
            cmd.arg("-drive").arg(format!(
                "if=none,id=d{i},format={format},file={}{ro},werror=report,rerror=report",
                d.path.display()
            ));
            let boot = if i == 0 { ",bootindex=0" } else { "" };
            cmd.arg("-device").arg(format!(
                "virtio-blk-pci,drive=d{i},serial={}{boot}",
                d.serial
            ));
        }
        cmd.args(extra_args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64 (run tests/e2e/setup-host.sh)")?;
        let stdin = child.stdin.take().unwrap();
        let shared = Arc::new(Shared {
            console: Mutex::new(Console {
                text: Vec::new(),
                exited: false,
            }),
            changed: Condvar::new(),
        });

        let mut out = child.stdout.take().unwrap();
        let mut clean_log = BufWriter::new(File::create(&log)?);
        let mut raw = BufWriter::new(File::create(&raw_log)?);
        let sh = shared.clone();
        std::thread::spawn(move || {
            let mut strip = Stripper::default();
            let mut buf = [0u8; 8192];
            let mut cleaned = Vec::new();
            loop {
                let n = out.read(&mut buf).unwrap_or(0);
                cleaned.clear();
                strip.feed(&buf[..n], &mut cleaned);
                let _ = raw.write_all(&buf[..n]);
                let _ = clean_log.write_all(&cleaned);
                let _ = raw.flush();
                let _ = clean_log.flush();
                let mut c = sh.console.lock().unwrap();
                c.text.extend_from_slice(&cleaned);
                if n == 0 {
                    c.exited = true;
                }
                sh.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let st = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            st.lock().unwrap().push_str(&s);
        });
        Ok(Vm {
            name: spec.name.clone(),
            child,
            stdin,
            shared,
            stderr,
            started: Instant::now(),
            cursor: 0,
            seq: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Time since QEMU started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Wait until `scan(text since the cursor)` returns `Some((value,
    /// consumed))`; the cursor then moves `consumed` bytes on. Fails on
    /// timeout or when QEMU exits first.
    fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut scan: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut c = self.shared.console.lock().unwrap();
        loop {
            if let Some((v, used)) = scan(&c.text[self.cursor..]) {
                self.cursor += used;
                return Ok(v);
            }
            if c.exited {
                drop(c);
                let status = self.child.wait().ok();
                // The stderr thread finishes right after the process.
                std::thread::sleep(Duration::from_millis(200));
                let err = self.stderr.lock().unwrap().clone();
                bail!(
                    "QEMU exited ({}) while waiting for {what}{}",
                    status.map_or("?".into(), |s| s.to_string()),
                    if err.trim().is_empty() {
                        String::new()
                    } else {
                        format!("; QEMU said: {}", err.trim())
                    }
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out after {} s waiting for {what}", timeout.as_secs());
            }
            c = self
                .shared
                .changed
                .wait_timeout(c, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The cleaned console text since QEMU started, and whether QEMU
    /// exited.
    pub fn console(&self) -> (String, bool) {
        let c = self.shared.console.lock().unwrap();
        (String::from_utf8_lossy(&c.text).into_owned(), c.exited)
    }

    /// Wait for `needle` in the console output after the cursor.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let n = needle.as_bytes();
        self.wait(&format!("{needle:?} on the console"), timeout, |t| {
            find(t, n).map(|i| ((), i + n.len()))
        })
    }

    fn send(&mut self, s: &str) -> Result<()> {
        self.stdin
            .write_all(s.as_bytes())
            .and_then(|()| self.stdin.flush())
            .context("writing to the serial console (QEMU gone?)")
    }

    /// Wait for the autologin shell and make it scriptable: a round trip
    /// through the shell, no echo, no kernel messages on the console, wide
    /// lines. Returns the time from QEMU start to the shell.
    pub fn login(&mut self, timeout: Duration) -> Result<Duration> {
        self.wait_for(PROMPT, timeout)
            .context("the guest did not reach the autologin shell")?;
        self.sync(Duration::from_secs(120))?;
        let at = self.uptime();
        self.ok("stty -echo cols 500 rows 50; dmesg -n 1")?;
        Ok(at)
    }

    /// Type `echo` lines (each after a Ctrl-C that discards a partial line)
    /// until the shell answers one.
    fn sync(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.seq += 1;
            let n = self.seq;
            self.send(&format!("\x03\necho \"@@SY\"\"NC-{n}@@\"\n"))?;
            match self.wait_for(&format!("@@SYNC-{n}@@"), Duration::from_secs(5)) {
                Ok(()) => return Ok(()),
                Err(e)
                    if Instant::now() < deadline && !self.shared.console.lock().unwrap().exited =>
                {
                    let _ = e;
                }
                Err(e) => return Err(e.context("the guest shell does not answer")),
            }
        }
    }

    /// Run `cmd` (one line of shell) in the guest and return its exit status
    /// and output.
    pub fn run_timeout(&mut self, cmd: &str, timeout: Duration) -> Result<Output> {
        assert!(!cmd.contains('\n'), "one line only: {cmd:?}");
        self.seq += 1;
        let n = self.seq;
        self.send(&format!(
            "echo \"@@BE\"\"GIN-{n}@@\"; {cmd}; echo \"@@E\"\"ND-{n}=$?@@\"\n"
        ))?;
        let begin = format!("@@BEGIN-{n}@@\n");
        let end = format!("@@END-{n}=");
        let what = format!("the end of `{cmd}`");
        let result = self.wait(&what, timeout, |t| {
            let b = find(t, begin.as_bytes())?;
            let body = &t[b + begin.len()..];
            if let Some(relogin) = find(body, AUTOLOGIN.as_bytes()) {
                // The shell was hung up and replaced: its command is lost.
                return Some((Err(relogin), b + begin.len() + relogin));
            }
            let e = find(body, end.as_bytes())?;
            let rest = &body[e + end.len()..];
            let close = find(rest, b"@@")?;
            let rc = std::str::from_utf8(&rest[..close])
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let text = String::from_utf8_lossy(&body[..e]).into_owned();
            Some((
                Ok(Output { rc, text }),
                b + begin.len() + e + end.len() + close + 2,
            ))
        })?;
        match result {
            Ok(out) => Ok(out),
            Err(_) => bail!("the guest's serial getty was hung up while running `{cmd}`"),
        }
    }

    /// [`Vm::run_timeout`] with a 2-minute limit.
    pub fn run(&mut self, cmd: &str) -> Result<Output> {
        self.run_timeout(cmd, Duration::from_secs(120))
    }

    /// Run `cmd`, require exit status 0, return its output.
    pub fn ok(&mut self, cmd: &str) -> Result<String> {
        self.ok_timeout(cmd, Duration::from_secs(120))
    }

    pub fn ok_timeout(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        let out = self.run_timeout(cmd, timeout)?;
        if out.rc != 0 {
            bail!("`{cmd}` exited {} in the guest:\n{}", out.rc, out.text);
        }
        Ok(out.text)
    }

    /// Shut the guest down with `systemctl VERB` (poweroff or reboot; QEMU
    /// runs with -no-reboot, so both end the process) and wait for QEMU to
    /// exit. Returns how long the shutdown took.
    pub fn shutdown(self, verb: &str, timeout: Duration) -> Result<Duration> {
        self.end_with(&format!("systemctl {verb}"), timeout)
    }

    /// Type `cmd` (which must end the guest: a shutdown, or a kernel crash
    /// with `echo c > /proc/sysrq-trigger`, which `panic=-1` turns into a
    /// reset) and wait for QEMU to exit cleanly, its disks flushed.
    pub fn end_with(mut self, cmd: &str, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        self.send(&format!("{cmd}\n"))?;
        let deadline = t0 + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("QEMU exited with {status} after `{cmd}`");
                }
                return Ok(t0.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "QEMU did not exit within {} s of `{cmd}`",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` non-blank lines of `text`, runs of spaces squeezed
/// (GRUB draws its menu with cursor moves, which become long blank runs).
pub fn tail_text(text: &str, lines: usize) -> String {
    let all: Vec<String> = text
        .lines()
        .map(|l| {
            let mut out = String::with_capacity(l.len());
            let mut spaces = 0;
            for c in l.trim_end().chars() {
                spaces = if c == ' ' { spaces + 1 } else { 0 };
                if spaces <= 4 {
                    out.push(c);
                }
            }
            out
        })
        .filter(|l| !l.is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Removes terminal control from console output: CSI (`ESC [ … final`),
/// OSC and DCS strings (to BEL or `ESC \`), other two- and three-byte
/// escapes, carriage returns and other C0 controls except newline and tab.
/// Keeps state across chunks.
#[derive(Default)]
pub struct Stripper {
    state: State,
    /// Bytes swallowed by the current OSC/DCS string (bounded, so a lost
    /// terminator cannot hide the rest of the log).
    string_len: usize,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum State {
    #[default]
    Text,
    Esc,
    EscIntermediate,
    Csi,
    String,
    StringEsc,
}

impl Stripper {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match self.state {
                State::Text => match b {
                    0x1b => State::Esc,
                    b'\n' | b'\t' => {
                        out.push(b);
                        State::Text
                    }
                    0..=0x1f | 0x7f => State::Text,
                    _ => {
                        out.push(b);
                        State::Text
                    }
                },
                State::Esc => match b {
                    b'[' => State::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => {
                        self.string_len = 0;
                        State::String
                    }
                    0x20..=0x2f => State::EscIntermediate,
                    _ => State::Text,
                },
                State::EscIntermediate => State::Text,
                State::Csi => match b {
                    0x20..=0x3f => State::Csi,
                    _ => State::Text,
                },
                State::String | State::StringEsc if self.string_len > 4096 => State::Text,
                State::String => {
                    self.string_len += 1;
                    match b {
                        0x07 => State::Text,
                        0x1b => State::StringEsc,
                        _ => State::String,
                    }
                }
                State::StringEsc => match b {
                    b'\\' => State::Text,
                    _ => State::String,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(chunks: &[&[u8]]) -> String {
        let mut s = Stripper::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strips_what_systemd_and_getty_print() {
        let raw: &[u8] = b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m.\r\r\n\
            \x1b[!p\x1b]104\x07\x1b[?7h\x1b[6n\x1b[32766;32766H\x1b[6n\x1b]3008;start=x\x1b\\root@cbootc-test:~# \x1b(B\x1b[=3hok\r\n";
        assert_eq!(
            strip(&[raw]),
            "[  OK  ] Reached target multi-user.target.\nroot@cbootc-test:~# ok\n"
        );
        // Split anywhere, the result is the same.
        for i in 0..raw.len() {
            assert_eq!(
                strip(&[&raw[..i], &raw[i..]]),
                strip(&[raw]),
                "split at {i}"
            );
        }
    }

    #[test]
    fn keeps_utf8_and_recovers_from_unterminated_strings() {
        assert_eq!(strip(&["Session…\r\n".as_bytes()]), "Session…\n");
        let mut raw = b"\x1b]0;".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 5000));
        raw.extend_from_slice(b"\nvisible\n");
        assert!(strip(&[&raw]).ends_with("visible\n"));
    }
}
