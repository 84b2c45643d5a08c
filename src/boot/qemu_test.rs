//! End-to-end check of the boot pieces in a real firmware and GRUB: build
//! `BOOTX64.EFI` with [`grub_efi`], lay out an ESP with [`grub_cfg`] and
//! [`grubenv`] output on a GPT disk, boot it in QEMU with OVMF, and watch the
//! serial console.
//!
//! No kernels are installed, so every entry fails to load; that is enough to
//! see which entry GRUB picks, that `fallback` moves on to the others, and —
//! by reading the disk image afterwards — that `save_env` really cleared the
//! one-shot `next_entry` on the FAT file system.
//!
//! Ignored by default: it needs `qemu-system-x86_64`, OVMF
//! (`/usr/share/OVMF/OVMF_CODE.fd`, Debian package `ovmf`), `sfdisk` and the
//! host's GRUB, and takes about half a minute.
//! Run with `cargo test -- --ignored qemu`.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::boot::{grub_cfg, grub_efi, grubenv};
use crate::util::command::{HostTools, run};

const UUID: &str = "C0FF-EE42";
const VOLUME_ID: u32 = 0xC0FF_EE42;
const MIB: u64 = 1 << 20;
/// ESP partition: starts at 1 MiB, 40 MiB long (FAT16 as formatted by
/// fatfs at this size; GRUB reads FAT12/16/32 alike).
const ESP_START: u64 = MIB;
const ESP_SIZE: u64 = 40 * MIB;
const DISK_SIZE: u64 = 48 * MIB;
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// GRUB's message when every entry of the menu failed to load.
const ALL_FAILED: &str = "Failed to boot both default and fallback entries";

fn entry(id: &str, title: &str) -> grub_cfg::MenuEntry {
    grub_cfg::MenuEntry {
        id: format!("cbootc-{id}"),
        title: title.into(),
        linux: format!("/cbootc/{id}/vmlinuz"),
        initrd: vec![format!("/cbootc/{id}/initramfs.img")],
        options: "console=ttyS0".into(),
    }
}

/// A GPT disk image with one ESP holding `files`.
fn make_disk(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)?.set_len(DISK_SIZE)?;
    let script = format!(
        "label: gpt\nstart={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n",
        ESP_START / 512,
        ESP_SIZE / 512
    );
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("running sfdisk")?;
    sfdisk.stdin.take().unwrap().write_all(script.as_bytes())?;
    assert!(sfdisk.wait()?.success(), "sfdisk failed");

    let mut esp = Cursor::new(vec![0u8; ESP_SIZE as usize]);
    fatfs::format_volume(
        &mut esp,
        fatfs::FormatVolumeOptions::new().volume_id(VOLUME_ID),
    )?;
    {
        let fs = fatfs::FileSystem::new(&mut esp, fatfs::FsOptions::new())?;
        for (path, data) in files {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let mut dir = fs.root_dir();
            for part in parent.split('/').filter(|p| !p.is_empty()) {
                dir = match dir.open_dir(part) {
                    Ok(d) => d,
                    Err(_) => dir.create_dir(part)?,
                };
            }
            dir.create_file(name)?.write_all(data)?;
        }
        fs.unmount()?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk)?;
    f.seek(SeekFrom::Start(ESP_START))?;
    f.write_all(esp.get_ref())?;
    Ok(disk)
}

/// Read a file back from the ESP in the disk image.
fn read_esp_file(disk: &Path, path: &str) -> Result<Vec<u8>> {
    let mut image = std::fs::File::open(disk)?;
    image.seek(SeekFrom::Start(ESP_START))?;
    let mut esp = vec![0u8; ESP_SIZE as usize];
    image.read_exact(&mut esp)?;
    let fs = fatfs::FileSystem::new(Cursor::new(esp), fatfs::FsOptions::new())?;
    let mut data = Vec::new();
    fs.root_dir().open_file(path)?.read_to_end(&mut data)?;
    Ok(data)
}

/// Kills QEMU when dropped, so a failing assertion does not leave it running.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boot the disk until the serial log contains `until`, and return the log.
fn boot(dir: &Path, disk: &Path, until: &str) -> Result<String> {
    boot_until(dir, disk, until, |log| log.contains(until))
}

/// Boot the disk until `done(serial log)`, and return the log.
fn boot_until(dir: &Path, disk: &Path, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).context("copying OVMF_VARS (is ovmf installed?)")?;
    let log = dir.join("serial.log");
    let _ = std::fs::remove_file(&log);
    // TCG by default: it takes ~10 s to reach GRUB, and KVM is not always
    // usable even where /dev/kvm exists (nested virtualisation can fail with
    // "KVM internal error… emulation failure" in OVMF). CBOOTC_QEMU_ACCEL=kvm
    // to override.
    let accel = std::env::var("CBOOTC_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", &format!("q35,accel={accel}"), "-m", "256"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut qemu = Qemu(child);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if done(&text) {
            // Let GRUB finish writing (save_env happens before this point,
            // but give the disk a moment) and stop the VM.
            std::thread::sleep(Duration::from_millis(500));
            drop(qemu);
            // Shown by the test harness on failure or with --nocapture.
            eprintln!("--- serial log ---\n{text}\n--- end of serial log ---");
            return Ok(text);
        }
        if let Some(status) = qemu.0.try_wait()? {
            let mut err = String::new();
            qemu.0.stderr.take().unwrap().read_to_string(&mut err)?;
            bail!("qemu exited ({status}) before {what:?}: {err}\nserial log:\n{text}");
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what:?}; serial log:\n{text}");
        }
    }
}

fn position(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in serial log:\n{log}"))
}

/// GRUB's `BOOTX64.EFI`, built by [`grub_efi`] to find the ESP with FAT
/// volume id `uuid`.
fn grub_binary(dir: &Path, uuid: &str) -> Vec<u8> {
    let efi = dir.join("BOOTX64.EFI");
    grub_efi::build_standalone(&HostTools::new().unwrap(), uuid, &efi).unwrap();
    std::fs::read(&efi).unwrap()
}

/// A disk whose ESP holds GRUB, a menu of "Entry A" (`cbootc-aa`, the
/// default) and "Entry B" (`cbootc-bb`) with a `timeout_secs` timeout, and
/// the environment block `grubenv`.
fn two_entry_disk(dir: &Path, timeout_secs: u32, grubenv: Vec<u8>) -> PathBuf {
    let entries = [entry("aa", "Entry A"), entry("bb", "Entry B")];
    let cfg = grub_cfg::render(&entries, UUID, timeout_secs).unwrap();
    make_disk(
        dir,
        &[
            ("EFI/BOOT/BOOTX64.EFI", grub_binary(dir, UUID)),
            ("grub/grub.cfg", cfg.into_bytes()),
            ("grub/grubenv", grubenv),
        ],
    )
    .unwrap()
}

#[test]
#[ignore = "boots QEMU with OVMF; run with --ignored"]
fn qemu_one_shot_entry_boots_once_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let env = grubenv::encode(&[
        ("keep".to_string(), "me".to_string()),
        ("next_entry".to_string(), "cbootc-bb".to_string()),
    ])
    .unwrap();
    let disk = two_entry_disk(dir.path(), 1, env);
    // Sanity: what we put there is a valid FAT volume with our id.
    assert!(
        run("sfdisk", &["--dump", disk.to_str().unwrap()])
            .unwrap()
            .contains("C12A7328")
    );

    // First boot: the one-shot entry B first, then fallback to A.
    let log = boot(dir.path(), &disk, ALL_FAILED).unwrap();
    let b = position(&log, "Booting `Entry B'");
    let a = position(&log, "Falling back to `Entry A'");
    assert!(b < a, "B must be tried before A:\n{log}");
    assert!(log.contains("/cbootc/bb/vmlinuz"), "{log}");
    assert!(!log.contains("cannot clear next_entry"), "{log}");

    // GRUB rewrote grubenv in place: next_entry cleared, the rest intact.
    let env = read_esp_file(&disk, "grub/grubenv").unwrap();
    assert_eq!(env.len(), grubenv::ENV_BLOCK_SIZE);
    assert_eq!(
        grubenv::decode(&env).unwrap(),
        vec![
            ("keep".to_string(), "me".to_string()),
            ("next_entry".to_string(), String::new()),
        ]
    );

    // Second boot: back to the default, A, with B as fallback.
    let log = boot(dir.path(), &disk, ALL_FAILED).unwrap();
    let a = position(&log, "Booting `Entry A'");
    let b = position(&log, "Falling back to `Entry B'");
    assert!(a < b, "A must be tried before B:\n{log}");
}

#[test]
#[ignore = "boots QEMU with OVMF; run with --ignored"]
fn qemu_wrong_esp_id_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // The binary looks for a different volume id than the ESP has.
    let efi = grub_binary(dir.path(), "1234-5678");
    let disk = make_disk(dir.path(), &[("EFI/BOOT/BOOTX64.EFI", efi)]).unwrap();
    let log = boot(
        dir.path(),
        &disk,
        "cbootc: cannot find the ESP (FAT volume id 1234-5678)",
    )
    .unwrap();
    assert!(!log.contains("Booting `"), "{log}");
}

/// If GRUB cannot clear `next_entry` (here: a block whose last variable runs
/// into the padding, which GRUB still loads but refuses to rewrite), the
/// one-shot entry must not be booted — it would stick for every later boot.
#[test]
#[ignore = "boots QEMU with OVMF; run with --ignored"]
fn qemu_unclearable_one_shot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = b"# GRUB Environment Block\nnext_entry=cbootc-bb\nbroken=".to_vec();
    env.resize(grubenv::ENV_BLOCK_SIZE, b'#');
    let disk = two_entry_disk(dir.path(), 0, env.clone());
    let log = boot(dir.path(), &disk, ALL_FAILED).unwrap();
    let warned = position(&log, "cbootc: cannot clear next_entry in grub/grubenv");
    let a = position(&log, "Booting `Entry A'");
    assert!(warned < a, "{log}");
    assert_eq!(read_esp_file(&disk, "grub/grubenv").unwrap(), env);
}

/// The kernel receives the options exactly as written, including characters
/// GRUB's script language would otherwise interpret. Needs a bootable x86-64
/// kernel in CBOOTC_TEST_KERNEL (any distribution's vmlinuz with an EFI stub
/// and a serial console driver).
#[test]
#[ignore = "boots QEMU with OVMF and a kernel from CBOOTC_TEST_KERNEL; run with --ignored"]
fn qemu_kernel_gets_the_command_line() {
    let kernel = std::env::var("CBOOTC_TEST_KERNEL")
        .expect("set CBOOTC_TEST_KERNEL to a bootable x86-64 vmlinuz for this test");
    let dir = tempfile::tempdir().unwrap();
    let options = "console=ttyS0,115200 panic=-1 a=$x b=* c=[1] d;e f|g h#i {j} k=1,2:3";
    let entries = [grub_cfg::MenuEntry {
        initrd: vec![],
        options: options.into(),
        ..entry("aa", "Linux")
    }];
    let cfg = grub_cfg::render(&entries, UUID, 0).unwrap();
    let disk = make_disk(
        dir.path(),
        &[
            ("EFI/BOOT/BOOTX64.EFI", grub_binary(dir.path(), UUID)),
            ("grub/grub.cfg", cfg.into_bytes()),
            ("cbootc/aa/vmlinuz", std::fs::read(&kernel).unwrap()),
        ],
    )
    .unwrap();
    // GRUB prepends BOOT_IMAGE=<path> (grub-core/loader/i386/linux.c).
    let want = format!("Command line: BOOT_IMAGE=/cbootc/aa/vmlinuz {options}\r");
    let log = boot_until(dir.path(), &disk, "the kernel's command line", |log| {
        log.split_once("Command line: ")
            .is_some_and(|(_, rest)| rest.contains('\n'))
    })
    .unwrap();
    assert!(log.contains(&want), "{log}");
}

#[test]
#[ignore = "boots QEMU with OVMF; run with --ignored"]
fn qemu_trial_boot_falls_back_when_not_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    // A is the new default on trial, B the deployment booted before.
    let env = grubenv::encode(&[
        ("cbootc_trial".to_string(), "cbootc-aa".to_string()),
        ("cbootc_tries".to_string(), "1".to_string()),
        ("cbootc_fallback".to_string(), "cbootc-bb".to_string()),
    ])
    .unwrap();
    let disk = two_entry_disk(dir.path(), 1, env);

    // Trial boot: A first, and GRUB has counted the try on the FAT ESP.
    let log = boot(dir.path(), &disk, ALL_FAILED).unwrap();
    assert!(
        position(&log, "Booting `Entry A'") < position(&log, "Falling back to `Entry B'"),
        "{log}"
    );
    assert!(!log.contains("did not finish booting"), "{log}");
    let vars = grubenv::decode(&read_esp_file(&disk, "grub/grubenv").unwrap()).unwrap();
    assert!(
        vars.contains(&("cbootc_tries".to_string(), "0".to_string())),
        "{vars:?}"
    );

    // Nobody confirmed A: the next boot goes to B, and the failed trial
    // entry is not retried (the fallback list starts after it).
    let log = boot(dir.path(), &disk, ALL_FAILED).unwrap();
    let said = position(
        &log,
        "cbootc: cbootc-aa did not finish booting; booting cbootc-bb",
    );
    assert!(said < position(&log, "Booting `Entry B'"), "{log}");
    assert!(
        !log[said..].contains("Entry A'"),
        "A is not retried:\n{log}"
    );
}
