//! `install to-disk --uki [--secure-boot]` with the real Debian test image
//! (its ukify, systemd-stub, systemd-boot and sbsign), checked without
//! booting: the UKI's sections, the loader entries, the signatures, where
//! the key went, and the sealed-UKI refusal; and systemd's own `bootctl`
//! reading cbootc's loader entries. Boots are in tests/e2e.
//!
//! Ignored by default: needs the image from tests/images/build-debian.sh
//! (`/var/tmp/cbootc-oci/debian`, tag v1; override with CBOOTC_TEST_OCI and
//! CBOOTC_TEST_OCI_TAG; an already extracted root file system of it in
//! CBOOTC_TEST_ROOTFS); tests/run-all.sh runs it after building the image.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cbootc::boot::secureboot::signature_count;
use cbootc::boot::systemd_boot::{self, LoaderConf, UkiEntry};
use common::*;

/// The test image's OCI layout and tag.
fn oci_layout() -> (PathBuf, String) {
    let dir =
        std::env::var("CBOOTC_TEST_OCI").unwrap_or_else(|_| "/var/tmp/cbootc-oci/debian".into());
    let tag = std::env::var("CBOOTC_TEST_OCI_TAG").unwrap_or_else(|_| "v1".into());
    (PathBuf::from(dir), tag)
}

/// `oci:DIR:TAG` of the test image.
fn oci_ref() -> String {
    let (dir, tag) = oci_layout();
    format!("oci:{}:{tag}", dir.display())
}

/// A blob of the test image's layout.
fn blob(digest: &str) -> PathBuf {
    oci_layout()
        .0
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The test image's manifest digest and manifest.
fn manifest() -> (String, serde_json::Value) {
    let (dir, tag) = oci_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build it with tests/images/build-debian.sh",
                dir.display()
            )
        }))
        .unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .expect("tag in index.json")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = serde_json::from_slice(&fs::read(blob(&digest)).unwrap()).unwrap();
    (digest, manifest)
}

/// The extracted root file system of the test image (for its shim, GRUB
/// and bootctl), extracted once per image manifest under
/// /var/tmp/cbootc-test-rootfs/, or CBOOTC_TEST_ROOTFS.
fn trixie_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Ok(r) = std::env::var("CBOOTC_TEST_ROOTFS") {
            return PathBuf::from(r);
        }
        let (digest, manifest) = manifest();
        let digest = digest.trim_start_matches("sha256:");
        let root = PathBuf::from(format!("/var/tmp/cbootc-test-rootfs/{}", &digest[..16]));
        if root.join(".cbootc-complete").exists() {
            return root;
        }
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
            let b = blob(layer["digest"].as_str().unwrap());
            sh(
                "tar",
                &[
                    "-xpf",
                    path_str(&b),
                    "--numeric-owner",
                    "-C",
                    path_str(&root),
                ],
            );
        }
        fs::write(root.join(".cbootc-complete"), b"").unwrap();
        root
    })
    .clone()
}

fn install(disk: &Path, imgref: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "install",
        "to-disk",
        "--source",
        imgref,
        "--size",
        "4G",
        "--karg",
        "console=ttyS0",
    ];
    args.extend_from_slice(extra);
    args.push(path_str(disk));
    cbootc(&args)
}

#[test]
#[ignore = "needs the Debian test image; run with --ignored"]
fn uki_secure_boot_install_is_signed_sealed_and_keeps_the_key_off_the_esp() {
    require_root();
    let work = scratch();
    let disk = work.path().join("sb.raw");
    let out = install(&disk, &oci_ref(), &["--uki", "--secure-boot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = independent_boot_id(&oci_ref());
    let esp = Esp::of(&disk);

    // The UKI: a PE whose .cmdline names this image, with the other sections.
    let uki = esp.read(&format!("/cbootc/{id}/uki.efi"));
    assert_eq!(&uki[..2], b"MZ");
    let cmdline = composefs_boot::uki::get_cmdline(&uki).unwrap();
    assert!(
        cmdline.contains(&format!("composefs.digest=?v1-sha512-12:{id}")),
        "{cmdline}"
    );
    assert!(
        cmdline.contains("console=ttyS0") && cmdline.contains(" rw"),
        "{cmdline}"
    );
    for section in [".osrel", ".linux", ".initrd", ".uname", ".sbat"] {
        assert!(
            composefs_boot::uki::get_section(&uki, section).is_some_and(|s| s.is_ok()),
            "{section} missing"
        );
    }
    assert_eq!(
        composefs_boot::uki::get_boot_label(&uki).unwrap(),
        "Debian GNU/Linux 13 (trixie) 13"
    );
    // Signed once, by cbootc (ukify did not sign it).
    assert_eq!(signature_count(&uki).unwrap(), 1);
    // An independent opinion: binutils sees a PE with the sections in order.
    let local = work.path().join("uki.efi");
    fs::write(&local, &uki).unwrap();
    let sections = sh("objdump", &["-h", path_str(&local)]);
    let pos = |s: &str| {
        sections
            .find(s)
            .unwrap_or_else(|| panic!("{s}: {sections}"))
    };
    assert!(pos(".osrel") < pos(".cmdline") && pos(".cmdline") < pos(".linux"));
    assert!(pos(".linux") < pos(".initrd"));

    // systemd-boot, loader.conf and the entry.
    assert!(esp.exists("/EFI/systemd/systemd-bootx64.efi"));
    assert_eq!(
        esp.read("/EFI/BOOT/BOOTX64.EFI"),
        esp.read("/EFI/systemd/systemd-bootx64.efi")
    );
    let conf = String::from_utf8(esp.read("/loader/loader.conf")).unwrap();
    assert!(
        conf.contains(&format!("default cbootc-{id}.conf")),
        "{conf}"
    );
    assert!(
        conf.contains("editor no"),
        "Secure Boot disables the editor: {conf}"
    );
    let entry = String::from_utf8(esp.read(&format!("/loader/entries/cbootc-{id}.conf"))).unwrap();
    assert!(
        entry.contains(&format!("efi /cbootc/{id}/uki.efi")),
        "{entry}"
    );
    assert!(entry.contains("sort-key cbootc-000"), "{entry}");
    assert!(
        !esp.exists("/grub/grub.cfg"),
        "no GRUB on a systemd-boot disk"
    );

    // Signatures verify against the exported certificate.
    let cer = PathBuf::from(format!("{}.sb.cer", disk.display()));
    assert_eq!(fs::read(&cer).unwrap(), esp.read("/EFI/BOOT/cbootc-db.cer"));
    let pem = work.path().join("db.pem");
    sh(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            path_str(&cer),
            "-out",
            path_str(&pem),
        ],
    );
    for f in [
        "/EFI/BOOT/BOOTX64.EFI",
        "/EFI/systemd/systemd-bootx64.efi",
        &format!("/cbootc/{id}/uki.efi"),
    ] {
        let local = work.path().join("check.efi");
        esp.get(f, &local);
        sh("sbverify", &["--cert", path_str(&pem), path_str(&local)]);
    }

    // The private key: on the root filesystem only, mode 0600.
    let parts = partitions(&disk);
    let root = Mounted::new(&disk, &parts[1]);
    let key = root
        .path()
        .join("state/os/default/var/lib/cbootc/secureboot/db.key");
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_text = fs::read_to_string(&key).unwrap();
    assert!(key_text.contains("PRIVATE KEY"));
    let esp_dump = work.path().join("esp");
    fs::create_dir_all(&esp_dump).unwrap();
    esp.get_all(&esp_dump);
    let out = std::process::Command::new("grep")
        .args(["-rl", "PRIVATE KEY", path_str(&esp_dump)])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "a private key on the ESP: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(root.path().join("state/cbootc/deployments.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["bootloader"], "systemd-boot");
    assert_eq!(record["secureBoot"], true);
}

#[test]
#[ignore = "needs the Debian test image; run with --ignored"]
fn grub_secure_boot_install_uses_the_signed_shim_chain() {
    require_root();
    let work = scratch();
    let disk = work.path().join("gsb.raw");
    let out = install(&disk, &oci_ref(), &["--secure-boot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let esp = Esp::of(&disk);
    let root = trixie_root();
    let shim = fs::read(root.join("usr/share/efi/EFI/debian/shimx64.efi")).unwrap();
    let grub = fs::read(root.join("usr/share/efi/EFI/debian/grubx64.efi")).unwrap();
    assert_eq!(
        esp.read("/EFI/BOOT/BOOTX64.EFI"),
        shim,
        "shim at the removable path"
    );
    assert_eq!(
        esp.read("/EFI/BOOT/grubx64.efi"),
        grub,
        "the distribution-signed GRUB"
    );
    let handover = String::from_utf8(esp.read("/EFI/BOOT/grub.cfg")).unwrap();
    assert!(handover.contains("grub/grub.cfg"), "{handover}");
    assert!(esp.exists("/grub/grub.cfg"));
}

/// A copy of the test image (blobs hard-linked) with one more layer
/// holding `files`, tagged `sealed`.
fn image_with_files(dir: &Path, files: &[(&str, &[u8])]) -> String {
    let (_, mut manifest) = manifest();
    let mut config: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        fs::hard_link(
            blob(d),
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap();
    }
    let mut entries = Vec::new();
    for (path, data) in files {
        let mut parent = PathBuf::new();
        for comp in Path::new(path).parent().unwrap().components() {
            parent.push(comp);
            entries.push(oci::dir(path_str(&parent), 0o755));
        }
        entries.push(oci::file(path, data));
    }
    let layer = oci::layer_tar(&entries);
    let layer_digest = oci::put_blob(dir, &layer);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(layer_digest.clone().into());
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = oci::put_blob(dir, &config).into();
    manifest["config"]["size"] = config.len().into();
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()
    }));
    oci::put_manifest(dir, "sealed", &manifest, None);
    format!("oci:{}:sealed", dir.display())
}

#[test]
#[ignore = "needs the Debian test image; run with --ignored"]
fn sealed_ukis_are_used_only_when_they_seal_the_image() {
    require_root();
    let work = scratch();
    // A UKI built for the plain test image.
    let first = work.path().join("first.raw");
    let out = install(&first, &oci_ref(), &["--uki"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = independent_boot_id(&oci_ref());
    let uki = Esp::of(&first).read(&format!("/cbootc/{id}/uki.efi"));

    // Shipped in /boot, which the composefs digest leaves out: the image id
    // is unchanged, the UKI seals it, and install uses it as it is.
    let good = image_with_files(
        &work.path().join("good"),
        &[("boot/EFI/Linux/sealed.efi", &uki)],
    );
    assert_eq!(independent_boot_id(&good), id);
    let disk = work.path().join("good.raw");
    let out = install(&disk, &good, &["--uki"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("using the sealed UKI"),
        "{}",
        stderr(&out)
    );
    assert_eq!(Esp::of(&disk).read(&format!("/cbootc/{id}/uki.efi")), uki);

    // The same UKI in an image that also differs in /usr: it seals another
    // image, and install refuses before writing anything.
    let bad = image_with_files(
        &work.path().join("bad"),
        &[
            ("boot/EFI/Linux/sealed.efi", &uki),
            ("usr/lib/cbootc-sealed-test", b"changed"),
        ],
    );
    let other = independent_boot_id(&bad);
    assert_ne!(other, id);
    let disk = work.path().join("bad.raw");
    let out = install(&disk, &bad, &["--uki"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&id) && err.contains(&other),
        "the error prints both digests: {err}"
    );
    assert!(!disk.exists(), "nothing was written");
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
