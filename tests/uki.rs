//! UKI, systemd-boot and Secure Boot building blocks against the real tools
//! of the Debian trixie test image (ukify, sbsign, systemd-boot, shim,
//! bootctl), and boot proofs in QEMU/OVMF:
//!
//! - systemd-boot + UKI, unsigned, normal OVMF: the default entry boots;
//!   a `LoaderEntryOneShot` written with cbootc's encoding boots the other
//!   entry once and is consumed.
//! - systemd-boot + UKI signed with a generated key enrolled in `db`, under
//!   Secure Boot: boots; without the key enrolled the firmware refuses it.
//! - The distribution's shim + signed GRUB handing over to cbootc's
//!   grub.cfg, under Secure Boot with only Microsoft's keys: boots, and
//!   shows which hand-over config GRUB read.
//!
//! All ignored by default: they need root, the test image
//! (tests/images/build-debian.sh → /var/tmp/cbootc-oci/debian, or
//! CBOOTC_TEST_ROOTFS / CBOOTC_TEST_OCI), QEMU, OVMF (package ovmf), mtools
//! and virt-fw-vars (package python3-virt-firmware); each boot takes one to
//! three minutes under TCG. Run: `cargo test --test uki -- --ignored
//! --test-threads=1 --nocapture`.

mod common;
#[path = "common/uki_boot.rs"]
mod uki_boot;

use std::fs;
use std::path::{Path, PathBuf};

use cbootc::boot::bls::BlsEntry;
use cbootc::boot::efivars;
use cbootc::boot::secureboot::{self, KeyPair, Signer, signature_count};
use cbootc::boot::systemd_boot::{self, LoaderConf, UkiEntry};
use cbootc::boot::{shim, uki};
use common::*;
use uki_boot::*;

/// A deployment as cbootc's GRUB install wrote it.
struct Deployment {
    id: String,
    kernel: PathBuf,
    initramfs: PathBuf,
    options: String,
}

/// Read the one deployment (kernel, initramfs, command line) from a GRUB
/// disk's ESP into `dir`.
fn deployment(esp: &Esp, dir: &Path) -> Deployment {
    let entries = esp.ls("/loader/entries");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = &entries[0];
    let id = name
        .strip_prefix("cbootc-")
        .and_then(|n| n.strip_suffix(".conf"))
        .unwrap()
        .to_string();
    let entry =
        BlsEntry::parse(&String::from_utf8(esp.read(&format!("/loader/entries/{name}"))).unwrap())
            .unwrap();
    let kernel = dir.join("vmlinuz");
    let initramfs = dir.join("initramfs.img");
    esp.get(&entry.linux, &kernel);
    esp.get(&entry.initrd[0], &initramfs);
    Deployment {
        id,
        kernel,
        initramfs,
        options: entry.options,
    }
}

/// Name of this test binary on the ESP, for [`guest_side_efivars`].
const GUEST_BIN: &str = "cbootc-guest-test";

/// Shell running [`guest_side_efivars`] step `step` in the guest with the
/// environment `env`, from the ESP (mounted at /boot by cbootc's unit, or
/// mounted here).
fn guest_step(step: u32, env: &str) -> String {
    format!(
        "B=/boot; mountpoint -q /boot || {{ mount -o ro /dev/vda1 /mnt && B=/mnt; }}; \
         cp $B/{GUEST_BIN} /tmp/t && chmod +x /tmp/t && \
         CBOOTC_GUEST_STEP={step} {env} /tmp/t --ignored --exact guest_side_efivars --nocapture 2>&1 | tail -n 20"
    )
}

/// Not a host test: the QEMU test copies this binary into the guest and
/// runs this function there, so that cbootc's efivars code is exercised on
/// a real efivarfs (immutable files, single-write semantics). Step 1 sets
/// the one-shot and default entries; step 2 (next boot) finds the one-shot
/// consumed by systemd-boot and removes the now-immutable default.
#[test]
#[ignore = "runs inside the QEMU guest of qemu_systemd_boot_uki_default_then_one_shot"]
fn guest_side_efivars() {
    let Ok(step) = std::env::var("CBOOTC_GUEST_STEP") else {
        eprintln!("not in the test guest (CBOOTC_GUEST_STEP unset): nothing to do");
        return;
    };
    let vars = efivars::EfiVars::system();
    let default = std::env::var("CBOOTC_GUEST_DEFAULT").unwrap();
    match step.as_str() {
        "1" => {
            let one_shot = std::env::var("CBOOTC_GUEST_ONE_SHOT").unwrap();
            vars.set_one_shot(&one_shot).unwrap();
            vars.set_default(&default).unwrap();
            assert_eq!(vars.one_shot().unwrap(), Some(one_shot));
            assert_eq!(vars.default_entry().unwrap(), Some(default));
        }
        "2" => {
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

/// The value of a `KEY=value` line of guest output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::trim)
}

fn kver(root: &Path) -> String {
    let mut v: Vec<String> = fs::read_dir(root.join("usr/lib/modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

fn build_uki(root: &Path, tools: &ChrootTools, dep: &Deployment, cmdline: &str, out: &Path) {
    let os_release = fs::read_to_string(root.join("usr/lib/os-release")).unwrap();
    let uname = kver(root);
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let t = std::time::Instant::now();
    uki::build(
        tools,
        &uki::UkiInput {
            kernel: &dep.kernel,
            initramfs: &dep.initramfs,
            cmdline,
            os_release: &os_release,
            uname: &uname,
        },
        out,
    )
    .unwrap();
    eprintln!("ukify build took {:.1} s", t.elapsed().as_secs_f64());
}

/// Replace the GRUB boot files on the ESP by the staged tree `stage`.
fn replace_grub_with(esp: &Esp, stage: &Path) {
    esp.delete("/EFI/BOOT/BOOTX64.EFI");
    esp.delete_tree("/grub");
    esp.delete_tree("/loader");
    esp.put_tree(stage);
}

#[test]
#[ignore = "needs the Debian test image; run with --ignored"]
fn image_ukify_builds_a_uki_that_reads_back() {
    let root = trixie_root();
    let tools = ChrootTools::new(&root);
    let dir = tempfile::tempdir().unwrap();
    let kv = kver(&root);
    let dep = Deployment {
        id: String::new(),
        kernel: root.join(format!("usr/lib/modules/{kv}/vmlinuz")),
        initramfs: root.join(format!("usr/lib/modules/{kv}/initramfs.img")),
        options: String::new(),
    };
    let hex = "ab".repeat(64);
    let cmdline = format!("root=UUID=0000 rw composefs.digest=?v1-sha512-12:{hex} console=ttyS0");
    let out = dir.path().join("uki.efi");
    build_uki(&root, &tools, &dep, &cmdline, &out);
    let data = fs::read(&out).unwrap();
    // composefs-boot reads what cbootc will check at install time.
    assert_eq!(composefs_boot::uki::get_cmdline(&data).unwrap(), cmdline);
    for s in [".osrel", ".linux", ".initrd", ".uname", ".sbat"] {
        assert!(
            matches!(composefs_boot::uki::get_section(&data, s), Some(Ok(_))),
            "{s} missing"
        );
    }
    assert_eq!(
        composefs_boot::uki::get_boot_label(&data).unwrap(),
        "Debian GNU/Linux 13 (trixie) 13"
    );
    uki::check_sealed(&data, &hex).unwrap();
    let err = uki::check_sealed(&data, &"cd".repeat(64)).unwrap_err();
    assert!(format!("{err:#}").contains(&hex), "{err:#}");
    // Independent opinion: binutils sees a PE with the sections in order.
    let sections = sh("objdump", &["-h", out.to_str().unwrap()]);
    let pos = |s: &str| {
        sections
            .find(s)
            .unwrap_or_else(|| panic!("{s}: {sections}"))
    };
    assert!(pos(".osrel") < pos(".cmdline") && pos(".cmdline") < pos(".linux"));
    assert!(pos(".linux") < pos(".initrd"));

    // Signed with the image's sbsign, verified with its sbverify.
    let kp = KeyPair::generate("cbootc uki test").unwrap();
    let signed = dir.path().join("signed.efi");
    secureboot::sign(&tools, &kp, &out, &signed).unwrap();
    assert_eq!(signature_count(&fs::read(&signed).unwrap()).unwrap(), 1);
    secureboot::verify(&tools, &kp.cert_pem().unwrap(), &signed).unwrap();
    // Signing leaves the sections alone.
    assert_eq!(
        composefs_boot::uki::get_cmdline(&fs::read(&signed).unwrap()).unwrap(),
        cmdline
    );
}

/// systemd's own parser (the trixie image's `bootctl list`, same sorting
/// rules as the boot loader) sees the entries in record order — against
/// both version and file name order — and picks loader.conf's default.
#[test]
#[ignore = "needs the Debian test image; run with --ignored"]
fn image_bootctl_agrees_on_order_and_default() {
    require_root();
    let root = trixie_root();
    // bootctl wants the ESP to be the root of a file system.
    let mnt = tempfile::tempdir_in(root.join("tmp")).unwrap();
    sh(
        "mount",
        &["-t", "tmpfs", "tmpfs", mnt.path().to_str().unwrap()],
    );
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.path().to_path_buf());
    let esp = mnt.path();
    let ids = ["aaaa", "bbbb", "cccc"];
    let mut entries = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let p = systemd_boot::esp_path(esp, &systemd_boot::uki_path(id));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"MZ").unwrap();
        entries.push((
            id.to_string(),
            UkiEntry {
                title: format!("Test {id}"),
                // Versions rise down the list: systemd-boot would put the
                // last first without sort keys.
                version: Some(format!("{}", i + 1)),
                sort_key: systemd_boot::sort_key(i).unwrap(),
                efi: systemd_boot::uki_path(id),
                options: None,
            },
        ));
    }
    let conf = LoaderConf {
        default: systemd_boot::entry_file_name("bbbb"),
        timeout: 3,
        editor: false,
    };
    systemd_boot::write_entries(esp, &entries, &conf).unwrap();
    let tool_esp = Path::new("/tmp").join(mnt.path().file_name().unwrap());
    let out = std::process::Command::new("chroot")
        .arg(&root)
        .args(["bootctl", "--no-pager", "--json=short", "list"])
        .arg(format!("--esp-path={}", tool_esp.display()))
        .env("SYSTEMD_RELAX_ESP_CHECKS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    let got: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        ["cbootc-aaaa.conf", "cbootc-bbbb.conf", "cbootc-cccc.conf"]
    );
    let default: Vec<bool> = list
        .iter()
        .map(|e| e["isDefault"].as_bool().unwrap())
        .collect();
    assert_eq!(default, [false, true, false]);
    assert_eq!(list[0]["efi"], "/cbootc/aaaa/uki.efi");
    assert_eq!(list[2]["sortKey"], "cbootc-002");
}

/// Unsigned systemd-boot + two UKIs (default "A", then "B"): A boots; a
/// LoaderEntryOneShot with cbootc's encoding, written in the guest, makes
/// the next boot B and is consumed by systemd-boot.
#[test]
#[ignore = "boots the Debian test image in QEMU; run with --ignored"]
fn qemu_systemd_boot_uki_default_then_one_shot() {
    require_root();
    let root = trixie_root();
    let tools = ChrootTools::new(&root);
    let work = scratch();
    let disk = grub_disk(work.path());
    let esp = Esp::of(&disk);
    let dep = deployment(&esp, work.path());

    let stage = work.path().join("esp");
    let id_a = dep.id.clone();
    let id_b = format!("{}-once", dep.id);
    let mut entries = Vec::new();
    for (i, (id, mark)) in [(&id_a, "default"), (&id_b, "once")]
        .into_iter()
        .enumerate()
    {
        let cmdline = format!("{} cbootc.test={mark}", dep.options);
        let path = systemd_boot::uki_path(id);
        build_uki(
            &root,
            &tools,
            &dep,
            &cmdline,
            &systemd_boot::esp_path(&stage, &path),
        );
        entries.push((
            id.clone(),
            UkiEntry {
                title: format!("Debian {mark}"),
                version: Some("13".into()),
                sort_key: systemd_boot::sort_key(i).unwrap(),
                efi: path,
                options: Some(cmdline),
            },
        ));
    }
    systemd_boot::install(&root, &stage, None).unwrap();
    // This test binary, to run cbootc's efivars code in the guest against
    // the real efivarfs (see guest_side_efivars).
    fs::copy(std::env::current_exe().unwrap(), stage.join(GUEST_BIN)).unwrap();
    let conf = LoaderConf {
        default: systemd_boot::entry_file_name(&id_a),
        timeout: 1,
        editor: true,
    };
    systemd_boot::write_entries(&stage, &entries, &conf).unwrap();
    replace_grub_with(&esp, &stage);

    let fw = Firmware {
        code: OVMF_CODE,
        vars: vars_copy(OVMF_VARS, &work.path().join("vars.fd")),
        secure: false,
    };
    let probe = format!(
        "cat /proc/cmdline; ls /sys/firmware/efi/efivars | grep -c ^Loader; {}; {}; {}",
        loader_var_probe("LoaderEntrySelected"),
        loader_var_probe("LoaderEntryOneShot"),
        SECURE_BOOT_PROBE
    );

    // Boot 1: the default.
    let mut g = Guest::start(&disk, &fw, &log_path("sdboot-boot1.log"));
    let shell = g.wait_for_shell().unwrap();
    let out = g.run(&probe).unwrap();
    eprintln!("boot 1: shell after {shell:.0} s\n{out}");
    assert!(out.contains("cbootc.test=default"), "{out}");
    assert!(
        out.contains(&format!("composefs.digest=?v1-sha512-12:{}", dep.id)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "LoaderEntrySelected={}",
            systemd_boot::entry_file_name(&id_a)
        )),
        "{out}"
    );
    assert!(out.contains("SB=0"), "{out}");
    // The menu listed both titles, A first.
    let console = g.text();
    let (a, b) = (console.find("Debian default"), console.find("Debian once"));
    assert!(a.is_some() && b.is_some() && a < b, "{console}");

    // cbootc's EfiVars, in the guest, on the real efivarfs: one-shot B,
    // NVRAM default A.
    let one_shot = systemd_boot::entry_file_name(&id_b);
    let default = systemd_boot::entry_file_name(&id_a);
    let out = g
        .run(&guest_step(
            1,
            &format!("CBOOTC_GUEST_ONE_SHOT={one_shot} CBOOTC_GUEST_DEFAULT={default}"),
        ))
        .unwrap();
    assert!(out.contains("GUEST-STEP-1-OK"), "{out}");
    let out = g.run(&probe).unwrap();
    assert_eq!(
        field(&out, "LoaderEntryOneShot"),
        Some(one_shot.as_str()),
        "{out}"
    );
    let off = g.poweroff().unwrap();
    eprintln!("boot 1: powered off after {off:.0} s");

    // The firmware stored it as written: read the VARS flash offline.
    let json = work.path().join("vars.json");
    sh(
        "virt-fw-vars",
        &[
            "-i",
            fw.vars.to_str().unwrap(),
            "--output-json",
            json.to_str().unwrap(),
        ],
    );
    let vars: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let var = vars["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == efivars::LOADER_ENTRY_ONE_SHOT)
        .unwrap_or_else(|| panic!("no LoaderEntryOneShot in {vars}"));
    assert_eq!(var["guid"], efivars::LOADER_GUID);
    assert_eq!(var["attr"], 7);
    let want: String = efivars::encode_utf16(&one_shot)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(var["data"], want.as_str());
    let var = vars["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == efivars::LOADER_ENTRY_DEFAULT)
        .unwrap_or_else(|| panic!("no LoaderEntryDefault in {vars}"));
    let want: String = efivars::encode_utf16(&default)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(var["data"], want.as_str());

    // Boot 2: B, once; the variable is gone afterwards.
    let mut g = Guest::start(&disk, &fw, &log_path("sdboot-boot2.log"));
    let shell = g.wait_for_shell().unwrap();
    let out = g.run(&probe).unwrap();
    eprintln!("boot 2: shell after {shell:.0} s\n{out}");
    assert!(out.contains("cbootc.test=once"), "{out}");
    assert!(
        out.contains(&format!("LoaderEntrySelected={one_shot}")),
        "{out}"
    );
    assert_eq!(field(&out, "LoaderEntryOneShot"), Some(""), "{out}");
    // The NVRAM default written last boot is now an immutable efivarfs
    // file: cbootc removes it anyway.
    let out = g
        .run(&format!(
            "lsattr /sys/firmware/efi/efivars/LoaderEntryDefault-{}; {}",
            efivars::LOADER_GUID,
            guest_step(2, &format!("CBOOTC_GUEST_DEFAULT={default}"))
        ))
        .unwrap();
    assert!(out.contains("GUEST-STEP-2-OK"), "{out}");
    eprintln!("boot 2 guest side:\n{out}");
    g.poweroff().unwrap();
}

/// systemd-boot and the UKI signed with a generated key: refused by
/// Secure Boot firmware with only Microsoft's keys, booted once the
/// certificate is in db.
#[test]
#[ignore = "boots the Debian test image in QEMU; run with --ignored"]
fn qemu_systemd_boot_uki_secure_boot_with_enrolled_key() {
    require_root();
    let root = trixie_root();
    let tools = ChrootTools::new(&root);
    let work = scratch();
    let disk = grub_disk(work.path());
    let esp = Esp::of(&disk);
    let dep = deployment(&esp, work.path());

    let kp = KeyPair::generate("cbootc test db key").unwrap();
    let (key, crt, cer) = (
        work.path().join("sb.key"),
        work.path().join("sb.crt"),
        work.path().join("sb.cer"),
    );
    kp.write(&key, &crt, &cer).unwrap();
    let signer = Signer::new(&tools, &kp);

    let stage = work.path().join("esp");
    let unsigned = work.path().join("uki.efi");
    build_uki(&root, &tools, &dep, &dep.options, &unsigned);
    let path = systemd_boot::uki_path(&dep.id);
    let dest = systemd_boot::esp_path(&stage, &path);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let t = std::time::Instant::now();
    systemd_boot::EfiSigner::sign(&signer, &unsigned, &dest).unwrap();
    eprintln!("signing the UKI took {:.1} s", t.elapsed().as_secs_f64());
    systemd_boot::install(&root, &stage, Some(&signer)).unwrap();
    for p in [
        dest.clone(),
        stage.join(systemd_boot::ESP_REMOVABLE_PATH),
        stage.join(systemd_boot::ESP_SYSTEMD_PATH),
    ] {
        secureboot::verify(&tools, &kp.cert_pem().unwrap(), &p).unwrap();
    }
    let entries = vec![(
        dep.id.clone(),
        UkiEntry {
            title: "Debian signed".into(),
            version: Some("13".into()),
            sort_key: systemd_boot::sort_key(0).unwrap(),
            efi: path,
            options: None,
        },
    )];
    let conf = LoaderConf {
        default: systemd_boot::entry_file_name(&dep.id),
        timeout: 1,
        editor: false,
    };
    systemd_boot::write_entries(&stage, &entries, &conf).unwrap();
    replace_grub_with(&esp, &stage);

    // Without our key in db, the firmware refuses systemd-boot.
    let fw = Firmware {
        code: OVMF_CODE_SECBOOT,
        vars: vars_copy(OVMF_VARS_MS, &work.path().join("vars-ms.fd")),
        secure: true,
    };
    let mut g = Guest::start(&disk, &fw, &log_path("sdboot-sb-refused.log"));
    let err = g.wait_for_shell().unwrap_err();
    let msg = format!("{err:#}");
    eprintln!(
        "without the key: {:.0} s",
        g.started.elapsed().as_secs_f64()
    );
    assert!(msg.contains("Access Denied"), "{msg}");
    assert!(!msg.contains("Linux version"), "{msg}");
    drop(g);

    // Enrolled: boots under Secure Boot.
    let vars = work.path().join("vars-enrolled.fd");
    sh(
        "virt-fw-vars",
        &[
            "-i",
            OVMF_VARS_MS,
            "--add-db",
            "a7b1e6a2-5ad2-4c3b-9a8c-3f0cbc7a0c11",
            crt.to_str().unwrap(),
            "-o",
            vars.to_str().unwrap(),
        ],
    );
    let fw = Firmware { vars, ..fw };
    let mut g = Guest::start(&disk, &fw, &log_path("sdboot-sb-enrolled.log"));
    let shell = g.wait_for_shell().unwrap();
    let out = g
        .run(&format!(
            "cat /proc/cmdline; {}; {}; dmesg | grep -i -m2 'secure boot'",
            SECURE_BOOT_PROBE,
            loader_var_probe("LoaderEntrySelected")
        ))
        .unwrap();
    eprintln!("enrolled: shell after {shell:.0} s\n{out}");
    assert!(out.contains("SB=1"), "{out}");
    assert!(out.contains("Secure boot enabled"), "{out}");
    assert!(out.contains(&dep.options), "{out}");
    assert!(
        out.contains(&format!(
            "LoaderEntrySelected={}",
            systemd_boot::entry_file_name(&dep.id)
        )),
        "{out}"
    );
    g.poweroff().unwrap();
}

/// Debian's shim (Microsoft-signed) → signed GRUB → cbootc's grub.cfg →
/// Debian-signed kernel, under Secure Boot with only Microsoft's keys.
#[test]
#[ignore = "boots the Debian test image in QEMU; run with --ignored"]
fn qemu_shim_grub_secure_boot() {
    require_root();
    let root = trixie_root();
    let work = scratch();
    let disk = grub_disk(work.path());
    let esp = Esp::of(&disk);
    let dep = deployment(&esp, work.path());
    let esp_part = &partitions(&disk)[0];
    let esp_uuid = sh(
        "blkid",
        &[
            "-p",
            "-O",
            &esp_part.offset().to_string(),
            "-s",
            "UUID",
            "-o",
            "value",
            disk.to_str().unwrap(),
        ],
    )
    .trim()
    .to_string();

    let os_id = "debian";
    let chain = shim::find(&root, os_id).unwrap();
    let stage = work.path().join("esp");
    let configs = shim::install(&chain, &stage, &esp_uuid).unwrap();
    assert_eq!(configs, ["EFI/BOOT/grub.cfg", "EFI/debian/grub.cfg"]);
    // Tell the two hand-over configs apart on the console.
    for cfg in &configs {
        let p = stage.join(cfg);
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, format!("echo \"cbootc-config: {cfg}\"\n{text}")).unwrap();
    }
    esp.delete("/EFI/BOOT/BOOTX64.EFI");
    esp.put_tree(&stage);
    assert!(esp.exists("/grub/grub.cfg"), "cbootc's menu stays");

    let fw = Firmware {
        code: OVMF_CODE_SECBOOT,
        vars: vars_copy(OVMF_VARS_MS, &work.path().join("vars.fd")),
        secure: true,
    };
    let mut g = Guest::start(&disk, &fw, &log_path("shim-grub-sb.log"));
    let shell = g.wait_for_shell().unwrap();
    let out = g
        .run(&format!(
            "cat /proc/cmdline; {}; dmesg | grep -i -m2 'secure boot'",
            SECURE_BOOT_PROBE
        ))
        .unwrap();
    eprintln!("shim: shell after {shell:.0} s\n{out}");
    let console = g.text();
    assert!(out.contains("SB=1"), "{out}");
    assert!(out.contains("Secure boot enabled"), "{out}");
    assert!(
        out.contains(&format!("composefs.digest=?v1-sha512-12:{}", dep.id)),
        "{out}"
    );
    let read: Vec<&String> = configs
        .iter()
        .filter(|c| console.contains(&format!("cbootc-config: {c}")))
        .collect();
    eprintln!("GRUB read the hand-over config(s): {read:?}");
    assert_eq!(read.len(), 1, "{console}");
    g.poweroff().unwrap();
}
