//! Boot tests of `install to-disk --uki` (systemd-boot + one UKI per
//! deployment), `--secure-boot` (the distribution's shim + GRUB) and both
//! (systemd-boot and UKIs signed with cbootc's generated key), each through
//! the whole cycle on the booted system, in three boots:
//!
//! 1. v1 as installed: checks; the OCI layout (v1 and v2) on a read-only
//!    disk; `cbootc switch oci:/run/oci:e2e-v2` (on systemd-boot a trial:
//!    entry `cbootc-<v2>+1.conf`, `default cbootc-*`); reboot;
//! 2. v2 (its UKI built by the v2 image's ukify, signed with the persisted
//!    key under Secure Boot): checks; on systemd-boot the trial confirmed
//!    (plain entry name, exact default); `cbootc rollback`; reboot;
//! 3. v1 again: checks; poweroff — except for `--uki`, which goes on with a
//!    failed trial ([`failed_trial`]: a v2 boot never confirmed and
//!    crashed, then v1 chosen by systemd-boot and rolled back to by cbootc).
//!
//! Each boot checks: `running`; the composefs id of `/proc/cmdline` and of
//! `/`; `/usr/lib/cbootc-test-version`; systemd-boot's
//! `LoaderEntrySelected` naming the deployment's entry (UKI), or GRUB's
//! `BOOT_IMAGE=`; `SecureBoot` = 1 under Secure Boot. The firmware is OVMF
//! with a writable VARS copy kept across the test's boots (an NVRAM).
//!
//! The signed-UKI test also boots a copy of the installed disk whose default
//! UKI had its signature removed, with cbootc's certificate enrolled: the
//! firmware must refuse it (systemd-boot reports the load error, the kernel
//! never starts).

//! History: the first runs (2026-11-22) found that a switch on the booted
//! guest (whose kernel has fs-verity, unlike the host that installed with
//! verity optional) staged a deployment whose composefs mount refused the
//! objects written at install ("overlayfs: lower file '…' has no fs-verity
//! digest"); upgrades now enable fs-verity on every object first
//! (`repo::enable_verity_everywhere`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use cbootc::boot::systemd_boot;

use crate::common;
use crate::fixture::{self, Ctx, e2e, host, image, image_v2, timing};
use crate::vm::{self, Drive, Firmware, Format, Vm};

/// systemd-boot's vendor GUID (LoaderEntrySelected, LoaderInfo).
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// EFI global variables (SecureBoot).
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The owner GUID cbootc's certificate is enrolled with.
const DB_OWNER: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// The OCI layout holding v1 and v2, as a disk image for the guest.
fn layout_disk() -> Result<&'static PathBuf> {
    static DISK: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DISK.get_or_init(|| {
        image_v2()
            .and_then(|_| Ok(std::fs::create_dir_all(fixture::env().work.join("disks"))?))
            .and_then(|_| fixture::layout_disk())
            .map_err(|e| format!("{e:#}"))
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("the OCI layout disk: {e}"))
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// `--uki`: systemd-boot, OVMF without Secure Boot.
    Uki,
    /// `--secure-boot`: shim + GRUB, Microsoft's keys, Secure Boot on.
    ShimGrub,
    /// `--uki --secure-boot`: signed systemd-boot + UKIs, cbootc's
    /// certificate enrolled, Secure Boot on.
    SignedUki,
}

impl Style {
    fn uki(self) -> bool {
        self != Style::ShimGrub
    }
    fn secure(self) -> bool {
        self != Style::Uki
    }
}

/// A copy of `template` at `dest`, writable.
fn copy_vars(template: &str, dest: &Path) -> Result<()> {
    std::fs::copy(template, dest).with_context(|| format!("copying {template}"))?;
    Ok(())
}

/// Microsoft's VARS with `cert` (DER) added to db.
fn enrolled_vars(cert: &Path, dest: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dest);
    host(
        &format!(
            "{}-virt-fw-vars.log",
            dest.file_stem().unwrap().to_string_lossy()
        ),
        Duration::from_secs(120),
        "virt-fw-vars",
        &[
            "--input",
            vm::OVMF_VARS_MS,
            "--output",
            dest.to_str().unwrap(),
            "--add-db",
            DB_OWNER,
            cert.to_str().unwrap(),
        ],
        &[],
    )
    .context("enrolling cbootc's certificate (virt-fw-vars: tests/e2e/setup-host.sh)")?;
    Ok(())
}

/// An EFI variable's data (after the 4 attribute bytes), as bytes.
fn efivar(vm: &mut Vm, name: &str, guid: &str) -> Result<Vec<u8>> {
    let out = vm.ok(&format!(
        "od -An -v -tu1 -j4 /sys/firmware/efi/efivars/{name}-{guid} | tr -s ' \\n' ' '"
    ))?;
    out.split_whitespace()
        .map(|b| b.parse::<u8>().context("od output"))
        .collect()
}

/// A UTF-16LE EFI string variable (systemd-boot's), without its NUL.
fn efivar_string(vm: &mut Vm, name: &str, guid: &str) -> Result<String> {
    let b = efivar(vm, name, guid)?;
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// The checks of every boot: the deployment `id` of version `version`
/// booted the way `style` boots.
fn booted(vm: &mut Vm, style: Style, id: &str, version: &str) -> Result<()> {
    crate::checks::system_running(vm)?;
    let cmdline = vm.ok("cat /proc/cmdline")?.trim().to_owned();
    let digest = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("composefs.digest="))
        .with_context(|| format!("no composefs.digest= in /proc/cmdline: {cmdline}"))?;
    let booted_id = digest.rsplit(':').next().unwrap_or_default();
    ensure!(
        booted_id == id,
        "/proc/cmdline boots {booted_id}, expected {id} ({version}): {cmdline}"
    );
    let root = vm.ok("findmnt -n -o SOURCE /")?;
    ensure!(
        root.trim() == format!("composefs:{id}"),
        "/ is {}, expected composefs:{id}",
        root.trim()
    );
    let v = vm.ok("cat /usr/lib/cbootc-test-version")?;
    ensure!(
        v.trim() == version,
        "/usr/lib/cbootc-test-version is {:?}, expected {version}",
        v.trim()
    );
    if style.uki() {
        let info = efivar_string(vm, "LoaderInfo", LOADER_GUID)?;
        ensure!(
            info.starts_with("systemd-boot"),
            "LoaderInfo is {info:?}: not booted by systemd-boot"
        );
        // A trial entry carries a boot counter (cbootc-<id>+0-1.conf by
        // the time it runs); whether systemd-boot's entry id keeps it
        // depends on its version.
        let entry = efivar_string(vm, "LoaderEntrySelected", LOADER_GUID)?;
        let selected = systemd_boot::parse_entry_file_name(&entry).map(|e| e.id);
        ensure!(
            selected.as_deref() == Some(id),
            "systemd-boot booted entry {entry:?}, expected cbootc-{id}.conf"
        );
        ensure!(
            !cmdline.starts_with("BOOT_IMAGE="),
            "GRUB's BOOT_IMAGE= on a UKI boot: {cmdline}"
        );
        vm.ok(&format!("test -f /boot/cbootc/{id}/uki.efi"))
            .context("the booted deployment's UKI is not on the ESP")?;
    } else {
        ensure!(
            cmdline.starts_with("BOOT_IMAGE="),
            "/proc/cmdline does not come from GRUB: {cmdline}"
        );
    }
    // OVMF without Secure Boot support may not have the variable at all.
    let exists =
        vm.run(&format!(
            "test -e /sys/firmware/efi/efivars/SecureBoot-{GLOBAL_GUID}"
        ))?
        .rc == 0;
    if style.secure() || exists {
        let sb = efivar(vm, "SecureBoot", GLOBAL_GUID)?;
        let want = u8::from(style.secure());
        ensure!(
            sb.last() == Some(&want),
            "SecureBoot variable {sb:?}, expected {want}"
        );
    }
    Ok(())
}

/// install → boot v1 → switch to v2 → reboot → v2 → rollback → reboot → v1.
fn cycle(ctx: &mut Ctx, style: Style, extra: &[&str]) -> Result<()> {
    let env = fixture::env();
    let v1 = image()?;
    let v2 = image_v2()?;
    let layout = layout_disk()?.clone();
    let name = ctx.name.clone();
    let inst = fixture::install(&name, extra)?;

    let vars = env.work.join("overlays").join(format!("{name}-vars.fd"));
    std::fs::create_dir_all(vars.parent().unwrap())?;
    fixture::remove_at_end(&vars);
    ctx.firmware = match style {
        Style::Uki => {
            copy_vars(vm::OVMF_VARS, &vars)?;
            Firmware::Pflash {
                code: vm::OVMF_CODE.into(),
                vars,
                secure: false,
            }
        }
        Style::ShimGrub => {
            copy_vars(vm::OVMF_VARS_MS, &vars)?;
            Firmware::Pflash {
                code: vm::OVMF_CODE_SECBOOT.into(),
                vars,
                secure: true,
            }
        }
        Style::SignedUki => {
            let cert = fixture::sb_cert(&inst.disk);
            ensure!(cert.exists(), "install wrote no {}", cert.display());
            enrolled_vars(&cert, &vars)?;
            Firmware::Pflash {
                code: vm::OVMF_CODE_SECBOOT.into(),
                vars,
                secure: true,
            }
        }
    };

    // Boot 1: v1; switch to v2 from the layout disk.
    let mut vm = ctx.boot(
        "boot1-v1",
        &inst.disk,
        true,
        vec![Drive::new(&layout, Format::Raw, "oci").read_only()],
        2048,
    )?;
    booted(&mut vm, style, &v1.id, "v1")?;
    vm.ok("mkdir -p /run/oci && mount -o ro /dev/disk/by-id/virtio-oci /run/oci")?;
    let t0 = Instant::now();
    let out = vm.ok_timeout(
        &format!("cbootc switch oci:/run/oci:{} 2>&1", v2.tag),
        Duration::from_secs(1200),
    )?;
    timing(
        &format!("{name}: cbootc switch to v2 in the guest"),
        t0.elapsed(),
    );
    eprintln!("e2e: {name}: cbootc switch:\n{}", vm::tail_text(&out, 15));
    let status = vm.ok("cbootc status --json")?;
    ensure!(
        status.contains(&v2.id),
        "cbootc status does not name the staged v2 {}:\n{status}",
        v2.id
    );
    if style.uki() {
        trial_staged(&mut vm, &v2.id)?;
    }
    vm.ok("umount /run/oci && sync")?;
    ctx.shutdown(vm, "reboot")?;

    // Boot 2: v2; roll back.
    let mut vm = ctx.boot("boot2-v2", &inst.disk, false, vec![], 2048)?;
    booted(&mut vm, style, &v2.id, "v2")?;
    if style.uki() {
        trial_confirmed(&mut vm, &v2.id)?;
    }
    let out = vm.ok("cbootc rollback 2>&1")?;
    eprintln!("e2e: {name}: cbootc rollback:\n{}", vm::tail_text(&out, 10));
    if style.uki() {
        let conf = vm.ok("cat /boot/loader/loader.conf")?;
        ensure!(
            conf.contains(&format!("cbootc-{}.conf", v1.id)),
            "after the rollback loader.conf does not default to v1:\n{conf}"
        );
    }
    vm.ok("sync")?;
    ctx.shutdown(vm, "reboot")?;

    // Boot 3: v1 again.
    let drives = if style == Style::Uki {
        vec![Drive::new(&layout, Format::Raw, "oci").read_only()]
    } else {
        vec![]
    };
    let mut vm = ctx.boot("boot3-v1", &inst.disk, false, drives, 2048)?;
    booted(&mut vm, style, &v1.id, "v1")?;
    let status = vm.ok("cbootc status")?;
    eprintln!("e2e: {name}: cbootc status after the rollback:\n{status}");
    if style == Style::Uki {
        return failed_trial(ctx, vm, &inst.disk);
    }
    ctx.shutdown(vm, "poweroff")
}

/// The ESP's `loader/entries/` file names.
fn entries(vm: &mut Vm) -> Result<Vec<String>> {
    Ok(vm
        .ok("ls /boot/loader/entries")?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// After `cbootc switch`: the new entry is on trial (one try left) and
/// loader.conf defaults to the first cbootc entry that is not bad.
fn trial_staged(vm: &mut Vm, id: &str) -> Result<()> {
    vm.ok(&format!("test -f /boot/cbootc/{id}/uki.efi"))
        .context("the switch wrote no UKI for the new deployment")?;
    let names = entries(vm)?;
    let trial = format!("cbootc-{id}+1.conf");
    ensure!(
        names.contains(&trial),
        "no trial entry {trial} after the switch: {names:?}"
    );
    let conf = vm.ok("cat /boot/loader/loader.conf")?;
    ensure!(
        conf.lines().any(|l| l.trim() == "default cbootc-*"),
        "loader.conf during a trial:\n{conf}"
    );
    Ok(())
}

/// On the trial deployment's first boot, once up: cbootc-boot-complete
/// confirmed it — the entry has its plain name, loader.conf names it.
fn trial_confirmed(vm: &mut Vm, id: &str) -> Result<()> {
    let names = entries(vm)?;
    ensure!(
        names.contains(&format!("cbootc-{id}.conf")) && !names.iter().any(|n| n.contains('+')),
        "after the confirmed trial the entries are {names:?}"
    );
    let conf = vm.ok("cat /boot/loader/loader.conf")?;
    ensure!(
        conf.lines()
            .any(|l| l.trim() == format!("default cbootc-{id}.conf")),
        "after the confirmed trial loader.conf is:\n{conf}"
    );
    let log = vm.ok("journalctl -b -o cat -u cbootc-boot-complete.service")?;
    ensure!(
        log.contains("booted: confirmed"),
        "cbootc-boot-complete.service did not confirm the trial:\n{log}"
    );
    Ok(())
}

/// systemd-boot's automatic rollback, on the `--uki` disk booted into v1
/// (after the rollback) with the OCI layout disk attached: `cbootc switch`
/// to v2 again (a new trial); the trial entry gets
/// `systemd.mask=cbootc-boot-complete.service` (and systemd-bless-boot's),
/// so the v2 boot comes up but is never confirmed, and its kernel is crashed (a reset, as by a
/// watchdog). The next boot must be v1, chosen by systemd-boot alone, and
/// cbootc must have rolled back: v1 the default, v2 marked failed.
fn failed_trial(ctx: &mut Ctx, mut vm: Vm, disk: &Path) -> Result<()> {
    let (v1, v2) = (image()?, image_v2()?);
    let name = ctx.name.clone();
    vm.ok("mkdir -p /run/oci && mount -o ro /dev/disk/by-id/virtio-oci /run/oci")?;
    vm.ok_timeout(
        &format!("cbootc switch oci:/run/oci:{} 2>&1", v2.tag),
        Duration::from_secs(1200),
    )?;
    trial_staged(&mut vm, &v2.id)?;
    // With Secure Boot off, systemd-stub takes the entry's options as the
    // command line.
    let trial = format!("/boot/loader/entries/cbootc-{}+1.conf", v2.id);
    vm.ok(&format!(
        "sed -i 's/^options .*/& systemd.mask=cbootc-boot-complete.service systemd.mask=systemd-bless-boot.service/' {trial} && grep -q 'systemd.mask=cbootc-boot-complete' {trial}"
    ))?;
    vm.ok("umount /run/oci && sync")?;
    ctx.shutdown(vm, "reboot")?;

    // Boot 4: the trial. systemd-boot has consumed its one try.
    let mut vm = ctx.boot("boot4-v2-trial", disk, false, vec![], 2048)?;
    booted(&mut vm, Style::Uki, &v2.id, "v2")?;
    let names = entries(&mut vm)?;
    ensure!(
        names.contains(&format!("cbootc-{}+0-1.conf", v2.id)),
        "systemd-boot did not count the try: {names:?}"
    );
    let state = vm.run("systemctl is-enabled cbootc-boot-complete.service")?;
    ensure!(
        state.text.trim().starts_with("masked"),
        "cbootc-boot-complete.service is {:?} on the trial boot",
        state.text.trim()
    );
    let took = vm.end_with("echo c > /proc/sysrq-trigger", Duration::from_secs(120))?;
    timing(&format!("{name}-boot4-v2-trial: crash to QEMU exit"), took);

    // Boot 5: systemd-boot passes over the bad entry; cbootc rolls back.
    let mut vm = ctx.boot("boot5-v1-fallback", disk, false, vec![], 2048)?;
    booted(&mut vm, Style::Uki, &v1.id, "v1")?;
    let log = vm.ok("journalctl -b -o cat -u cbootc-boot-complete.service")?;
    ensure!(
        log.contains("did not finish booting; rolled back"),
        "cbootc-boot-complete.service did not roll back:\n{log}"
    );
    let names = entries(&mut vm)?;
    ensure!(
        !names.iter().any(|n| n.contains('+')),
        "after the rollback an entry still has a counter: {names:?}"
    );
    let conf = vm.ok("cat /boot/loader/loader.conf")?;
    ensure!(
        conf.lines()
            .any(|l| l.trim() == format!("default cbootc-{}.conf", v1.id)),
        "after the automatic rollback loader.conf is:\n{conf}"
    );
    let status = vm.ok("cbootc status")?;
    eprintln!("e2e: {name}: cbootc status after the failed trial:\n{status}");
    ensure!(
        status.contains("FAILED TO BOOT"),
        "cbootc status does not show v2 failed:\n{status}"
    );
    ctx.shutdown(vm, "poweroff")
}

/// `--uki`: systemd-boot + UKIs, OVMF with a VARS copy, no Secure Boot.
#[test]
#[ignore = "boots QEMU; run with --ignored"]
fn uki1_systemd_boot_upgrade_rollback() {
    e2e("uki", |ctx: &mut Ctx| cycle(ctx, Style::Uki, &["--uki"]));
}

/// `--secure-boot`: shim + signed GRUB under Secure Boot with Microsoft's
/// keys only.
#[test]
#[ignore = "boots QEMU; run with --ignored"]
fn uki2_shim_grub_secure_boot_upgrade_rollback() {
    e2e("sb-grub", |ctx: &mut Ctx| {
        cycle(ctx, Style::ShimGrub, &["--secure-boot"])
    });
}

/// `--uki --secure-boot`: systemd-boot and UKIs signed with cbootc's key,
/// its certificate enrolled in db, Secure Boot enforced; then a UKI without
/// a signature is refused.
#[test]
#[ignore = "boots QEMU; run with --ignored"]
fn uki3_signed_secure_boot_upgrade_rollback_and_unsigned_refused() {
    e2e("sb-uki", |ctx: &mut Ctx| {
        cycle(ctx, Style::SignedUki, &["--uki", "--secure-boot"])?;
        unsigned_refused(ctx)
    });
}

/// A copy of the signed install whose default entry's UKI lost its
/// signature, booted with cbootc's certificate enrolled: the firmware's
/// LoadImage refuses it (systemd-boot prints the error) and the kernel never
/// starts.
fn unsigned_refused(ctx: &mut Ctx) -> Result<()> {
    let env = fixture::env();
    let v1 = image()?;
    let name = ctx.name.clone();
    let installed = env.work.join(format!("disks/{name}.raw"));
    let disk = env.work.join(format!("disks/{name}-unsigned.raw"));
    let _ = std::fs::remove_file(&disk);
    fixture::remove_at_end(&disk);
    host(
        &format!("{name}-unsigned-cp.log"),
        Duration::from_secs(300),
        "cp",
        &[
            "--sparse=always",
            installed.to_str().unwrap(),
            disk.to_str().unwrap(),
        ],
        &[],
    )?;
    let parts = common::partitions(&disk);
    let esp = format!("{}@@{}", disk.display(), parts[0].offset());
    let uki_path = format!("::cbootc/{}/uki.efi", v1.id);
    let scratch = common::scratch();
    let local = scratch.path().join("uki.efi");
    let mt = |tool: &str, args: &[&str]| -> Result<String> {
        let mut a = vec!["-i", &esp];
        a.extend_from_slice(args);
        host(
            &format!("{name}-unsigned-{tool}.log"),
            Duration::from_secs(120),
            tool,
            &a,
            &[("MTOOLS_SKIP_CHECK", Path::new("1"))],
        )
    };
    mt("mcopy", &["-n", &uki_path, local.to_str().unwrap()])?;
    let signed = std::fs::read(&local)?;
    let unsigned = strip_signature(&signed)?;
    std::fs::write(&local, &unsigned)?;
    mt("mcopy", &["-o", local.to_str().unwrap(), &uki_path])?;
    eprintln!(
        "e2e: {name}: {uki_path}: signature removed ({} -> {} bytes)",
        signed.len(),
        unsigned.len()
    );

    let vars = env
        .work
        .join("overlays")
        .join(format!("{name}-unsigned-vars.fd"));
    fixture::remove_at_end(&vars);
    enrolled_vars(&fixture::sb_cert(&installed), &vars)?;
    ctx.firmware = Firmware::Pflash {
        code: vm::OVMF_CODE_SECBOOT.into(),
        vars,
        secure: true,
    };
    let vm = ctx.start("unsigned", vec![Drive::new(&disk, Format::Raw, "system")])?;
    let t0 = Instant::now();
    // systemd-boot (itself signed, so it runs) reports the UKI's LoadImage
    // failure, naming the file: "Error loading \cbootc\<id>\uki.efi:
    // Access denied" (OVMF answers Access Denied or Security Violation).
    let uki_efi = format!("\\cbootc\\{}\\uki.efi", v1.id);
    let refusal_line = |text: &str| {
        text.lines()
            .find(|l| {
                let l = l.to_ascii_lowercase();
                l.contains(&uki_efi)
                    && ["access denied", "security violation"]
                        .iter()
                        .any(|r| l.contains(r))
            })
            // The menu's redraws share the line: keep the message.
            .map(|l| {
                let at = l.find("Error loading").unwrap_or(0);
                l[at..].trim().to_owned()
            })
    };
    const KERNEL: &[&str] = &["Linux version", "EFI stub", "systemd-stub", "Run /init"];
    let deadline = t0 + fixture::boot_timeout();
    let line = loop {
        let (text, exited) = vm.console();
        if let Some(k) = KERNEL.iter().find(|k| text.contains(**k)) {
            bail!("the unsigned UKI was started ({k:?} on the console)");
        }
        if let Some(line) = refusal_line(&text) {
            break line;
        }
        if exited {
            bail!("QEMU exited before the firmware refused {uki_efi}");
        }
        if Instant::now() > deadline {
            bail!("no refusal of {uki_efi} on the console within the boot timeout");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    timing(
        &format!("{name}-unsigned: QEMU start to refusal"),
        t0.elapsed(),
    );
    eprintln!("e2e: {name}: refused: {line}");
    // Give a wrongly started kernel time to show itself.
    std::thread::sleep(Duration::from_secs(20));
    let (text, _) = vm.console();
    if let Some(k) = KERNEL.iter().find(|k| text.contains(**k)) {
        bail!("after the refusal ({line:?}), the kernel started anyway ({k:?})");
    }
    drop(vm);
    Ok(())
}

/// A PE image without its Authenticode signature: the certificate table
/// (data directory 4) cleared and the file cut where the table began.
fn strip_signature(pe: &[u8]) -> Result<Vec<u8>> {
    let u16at = |o: usize| u16::from_le_bytes([pe[o], pe[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes(pe[o..o + 4].try_into().unwrap());
    ensure!(pe.len() > 0x40 && &pe[..2] == b"MZ", "not a PE image");
    let nt = u32at(0x3c) as usize;
    ensure!(&pe[nt..nt + 4] == b"PE\0\0", "no PE signature");
    let opt = nt + 24;
    ensure!(u16at(opt) == 0x20b, "not PE32+");
    let dir = opt + 112 + 4 * 8;
    let (off, size) = (u32at(dir) as usize, u32at(dir + 4) as usize);
    ensure!(off != 0 && size != 0, "the UKI carries no signature");
    ensure!(off + size <= pe.len(), "certificate table beyond the file");
    let mut out = pe[..off].to_vec();
    out[dir..dir + 8].fill(0);
    Ok(out)
}
