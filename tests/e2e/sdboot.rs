//! systemd-boot's one-shot entry, and cbootc's EFI variable code on a real
//! efivarfs. An `--uki` install gets a second loader entry (the same UKI,
//! sorted after the first) and this test binary on its ESP; the firmware is
//! OVMF with a VARS copy kept across the two boots (an NVRAM):
//!
//! 1. the default entry boots; in the guest, cbootc's `EfiVars` (run by
//!    [`guest_side_efivars`]) sets `LoaderEntryOneShot` to the second entry
//!    and `LoaderEntryDefault` to the first; powered off, the VARS file holds
//!    both as cbootc encoded them;
//! 2. the second entry boots, once: systemd-boot consumed the one-shot; the
//!    NVRAM default, now an immutable efivarfs file, is removed by cbootc.
//!
//! `cbootc rollback --once` on systemd-boot is exactly that variable write.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cbootc::boot::efivars;
use cbootc::boot::systemd_boot;

use crate::common::Esp;
use crate::fixture::{self, Ctx, e2e, host, image};
use crate::vm::{self, Firmware};

/// Name of this test binary on the ESP, for [`guest_side_efivars`].
const GUEST_BIN: &str = "cbootc-guest-test";

/// Shell running [`guest_side_efivars`] step `step` in the guest with the
/// environment `env`, from the ESP (mounted at /boot).
fn guest_step(vm: &mut vm::Vm, step: u32, env: &str) -> Result<()> {
    let out = vm.ok_timeout(
        &format!(
            "cp /boot/{GUEST_BIN} /tmp/t && chmod +x /tmp/t && \
             CBOOTC_GUEST_STEP={step} {env} /tmp/t --ignored --exact sdboot::guest_side_efivars --nocapture 2>&1"
        ),
        Duration::from_secs(300),
    )?;
    eprintln!("e2e: guest step {step}:\n{}", vm::tail_text(&out, 20));
    ensure!(
        out.contains(&format!("GUEST-STEP-{step}-OK")),
        "guest step {step} did not run:\n{out}"
    );
    Ok(())
}

/// Not a host test: [`one_shot_entry_boots_once`] copies this binary into
/// the guest and runs this function there, so that cbootc's efivars code is
/// exercised on a real efivarfs (immutable files, single-write semantics).
/// Step 1 finds the default booted and sets the one-shot and default
/// entries; step 2 (next boot) finds the one-shot booted and consumed by
/// systemd-boot, and removes the now-immutable default.
#[test]
#[ignore = "runs inside the QEMU guest of one_shot_entry_boots_once"]
fn guest_side_efivars() {
    let Ok(step) = std::env::var("CBOOTC_GUEST_STEP") else {
        eprintln!("not in the test guest (CBOOTC_GUEST_STEP unset): nothing to do");
        return;
    };
    let vars = efivars::EfiVars::system();
    let selected = || vars.read_loader_string("LoaderEntrySelected").unwrap();
    let default = std::env::var("CBOOTC_GUEST_DEFAULT").unwrap();
    let one_shot = std::env::var("CBOOTC_GUEST_ONE_SHOT").unwrap();
    match step.as_str() {
        "1" => {
            assert_eq!(
                selected(),
                Some(default.clone()),
                "booted loader.conf's default"
            );
            vars.set_one_shot(&one_shot).unwrap();
            vars.set_default(&default).unwrap();
            assert_eq!(vars.one_shot().unwrap(), Some(one_shot));
            assert_eq!(vars.default_entry().unwrap(), Some(default));
        }
        "2" => {
            assert_eq!(selected(), Some(one_shot), "booted the one-shot entry");
            assert_eq!(vars.one_shot().unwrap(), None, "consumed by systemd-boot");
            assert_eq!(vars.default_entry().unwrap(), Some(default));
            assert!(vars.clear_default().unwrap());
            assert_eq!(vars.default_entry().unwrap(), None);
            assert!(!vars.clear_default().unwrap());
            assert_eq!(vars.secure_boot().unwrap(), Some(false));
        }
        other => panic!("unknown step {other}"),
    }
    println!("GUEST-STEP-{step}-OK");
}

/// The hex data of EFI variable `name` (systemd's vendor GUID, attributes
/// NV+BS+RT) in the JSON `virt-fw-vars` printed of a VARS file.
fn stored_var<'a>(vars: &'a serde_json::Value, name: &str) -> Result<&'a str> {
    let var = vars["variables"]
        .as_array()
        .context("virt-fw-vars JSON without variables")?
        .iter()
        .find(|v| v["name"] == name)
        .with_context(|| format!("no {name} in the VARS file: {vars}"))?;
    ensure!(
        var["guid"] == efivars::LOADER_GUID && var["attr"] == efivars::ATTRS_NV_BS_RT,
        "{name} stored as {var}"
    );
    var["data"].as_str().context("variable without data")
}

fn hex_utf16(s: &str) -> Result<String> {
    Ok(efivars::encode_utf16(s)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Unsigned systemd-boot + UKI (`--uki`), two entries: the default boots;
/// a `LoaderEntryOneShot` written by cbootc's code in the guest makes the
/// next boot the other entry and is consumed by systemd-boot.
#[test]
#[ignore = "boots QEMU; run with --ignored"]
fn one_shot_entry_boots_once() {
    e2e("one-shot", |ctx: &mut Ctx| {
        let env = fixture::env();
        let img = image()?;
        let name = ctx.name.clone();
        let inst = fixture::install(&name, &["--uki"])?;

        // A second entry for the same UKI, sorted after the first, and this
        // binary, on the installed ESP.
        let esp = Esp::of(&inst.disk);
        let default = systemd_boot::entry_file_name(&img.id);
        let one_shot = systemd_boot::entry_file_name(&format!("{}-once", img.id));
        let entry = String::from_utf8(esp.read(&format!("/loader/entries/{default}")))?;
        let second = entry.replace("sort-key cbootc-000", "sort-key cbootc-001");
        ensure!(
            second != entry,
            "no sort-key cbootc-000 in {default}:\n{entry}"
        );
        let scratch = crate::common::scratch();
        let local = scratch.path().join("entry.conf");
        std::fs::write(&local, second)?;
        esp.put(&local, &format!("/loader/entries/{one_shot}"));
        esp.put(&std::env::current_exe()?, &format!("/{GUEST_BIN}"));

        let vars = env.work.join("overlays").join(format!("{name}-vars.fd"));
        std::fs::create_dir_all(vars.parent().unwrap())?;
        std::fs::copy(vm::OVMF_VARS, &vars)
            .with_context(|| format!("copying {}", vm::OVMF_VARS))?;
        crate::fixture::remove_at_end(&vars);
        ctx.firmware = Firmware::Pflash {
            code: vm::OVMF_CODE.into(),
            vars: vars.clone(),
            secure: false,
        };
        let guest_env = format!("CBOOTC_GUEST_ONE_SHOT={one_shot} CBOOTC_GUEST_DEFAULT={default}");

        // Boot 1: the default; cbootc's code sets the one-shot and default.
        let mut vm = ctx.boot("boot1", &inst.disk, true, vec![], 2048)?;
        crate::checks::system_running(&mut vm)?;
        guest_step(&mut vm, 1, &guest_env)?;
        ctx.shutdown(vm, "poweroff")?;

        // The firmware stored them as written: read the VARS flash offline.
        let json = scratch.path().join("vars.json");
        host(
            &format!("{name}-virt-fw-vars.log"),
            Duration::from_secs(120),
            "virt-fw-vars",
            &[
                "-i",
                vars.to_str().unwrap(),
                "--output-json",
                json.to_str().unwrap(),
            ],
            &[],
        )?;
        let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        for (var, value) in [
            (efivars::LOADER_ENTRY_ONE_SHOT, &one_shot),
            (efivars::LOADER_ENTRY_DEFAULT, &default),
        ] {
            let data = stored_var(&stored, var)?;
            ensure!(
                data == hex_utf16(value)?,
                "{var} stored as {data}, expected {value:?} in UTF-16"
            );
        }

        // Boot 2: the one-shot entry, once; cbootc removes the default.
        let mut vm = ctx.boot("boot2", &inst.disk, false, vec![], 2048)?;
        crate::checks::system_running(&mut vm)?;
        let attrs = vm.run(&format!(
            "lsattr /sys/firmware/efi/efivars/{}-{}",
            efivars::LOADER_ENTRY_DEFAULT,
            efivars::LOADER_GUID
        ))?;
        eprintln!("e2e: {name}: {}", attrs.text.trim());
        guest_step(&mut vm, 2, &guest_env)?;
        ctx.shutdown(vm, "poweroff")
    });
}
