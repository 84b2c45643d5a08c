//! Boot a disk installed from the cbootc test image in QEMU (OVMF; KVM where
//! it works, else TCG) through a throwaway qcow2 overlay, log in on its
//! serial console, run shell commands, print their output and power off.
//! The disk itself is not modified. Used by `examples/demo.sh`; the boot
//! tests (tests/e2e) use the same console driver.
//!
//! ```sh
//! cargo run --release --example vm-run -- DISK.raw [--logs DIR] [--] CMD...
//! ```
//!
//! Exits non-zero if the guest does not come up or a command fails. Needs
//! root only for what QEMU needs (reading the disk, /dev/kvm).

#[path = "../tests/e2e/vm.rs"]
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vm-run: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let mut disk = None;
    let mut logs = None;
    let mut cmds = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--logs" => {
                logs = Some(PathBuf::from(
                    args.next().context("--logs needs a directory")?,
                ))
            }
            "--" => cmds.extend(args.by_ref()),
            "-h" | "--help" => {
                eprintln!("usage: vm-run DISK.raw [--logs DIR] [--] CMD...");
                return Ok(true);
            }
            _ if disk.is_none() => disk = Some(PathBuf::from(a)),
            _ => cmds.push(a),
        }
    }
    let disk =
        std::fs::canonicalize(disk.context("usage: vm-run DISK.raw [--logs DIR] [--] CMD...")?)
            .context("the disk image")?;
    let logs = logs.unwrap_or_else(|| disk.parent().unwrap().to_owned());
    std::fs::create_dir_all(&logs)?;
    let stem = disk.file_stem().unwrap().to_string_lossy().into_owned();
    let overlay = logs.join(format!("{stem}.overlay.qcow2"));
    vm::overlay(&disk, vm::Format::Raw, &overlay)?;

    eprintln!(
        "vm-run: booting {} (console log: {})",
        disk.display(),
        logs.join(format!("{stem}-console.log")).display()
    );
    let t0 = Instant::now();
    let mut vm = vm::Vm::start(&vm::VmSpec {
        name: format!("{stem}-console"),
        log_dir: logs.clone(),
        drives: vec![vm::Drive::new(&overlay, vm::Format::Qcow2, "system")],
        memory_mib: 2048,
    })?;
    let at = vm.login(Duration::from_secs(600))?;
    eprintln!(
        "vm-run: logged in on the serial console after {} s",
        at.as_secs()
    );
    let state = vm.run_timeout(
        "systemctl is-system-running --wait",
        Duration::from_secs(300),
    )?;
    eprintln!("vm-run: system {}", state.text.trim());

    let mut all_ok = true;
    for cmd in &cmds {
        println!("\n[guest]# {cmd}");
        let out = vm.run_timeout(cmd, Duration::from_secs(300))?;
        print!("{}", out.text);
        if out.rc != 0 {
            println!("(exit status {})", out.rc);
            all_ok = false;
        }
    }
    println!();
    vm.shutdown("poweroff", Duration::from_secs(180))?;
    let _ = std::fs::remove_file(&overlay);
    eprintln!("vm-run: powered off after {} s", t0.elapsed().as_secs());
    if !all_ok {
        bail!("a command failed in the guest");
    }
    Ok(true)
}
