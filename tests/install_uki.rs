//! `install to-disk --uki [--secure-boot]` with the real Debian test image
//! (its ukify, systemd-stub, systemd-boot and sbsign), checked without
//! booting: the UKI's sections, the loader entries, the signatures, where
//! the key went, and the sealed-UKI refusal. Boots are in tests/e2e.
//!
//! Ignored by default: needs the image from tests/images/build-debian.sh
//! (`/var/tmp/cbootc-oci/debian`, or CBOOTC_TEST_OCI); tests/run-all.sh
//! runs it after building the image.

mod common;
#[path = "common/uki_boot.rs"]
mod uki_boot;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use sha2::Digest;
use uki_boot::{Esp, oci_layout, oci_ref};

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
    for section in [".osrel", ".linux", ".initrd", ".uname"] {
        assert!(
            composefs_boot::uki::get_section(&uki, section).is_some_and(|s| s.is_ok()),
            "{section} missing"
        );
    }

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
    assert_eq!(
        std::fs::read(&cer).unwrap(),
        esp.read("/EFI/BOOT/cbootc-db.cer")
    );
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
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.contains("PRIVATE KEY"));
    let esp_dump = work.path().join("esp");
    std::fs::create_dir_all(&esp_dump).unwrap();
    sh(
        "mcopy",
        &[
            "-s",
            "-n",
            "-i",
            &format!("{}@@{}", disk.display(), parts[0].offset()),
            "::*",
            path_str(&esp_dump),
        ],
    );
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
        &std::fs::read(root.path().join("state/cbootc/deployments.json")).unwrap(),
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
    let root = uki_boot::trixie_root();
    let shim = std::fs::read(root.join("usr/share/efi/EFI/debian/shimx64.efi")).unwrap();
    let grub = std::fs::read(root.join("usr/share/efi/EFI/debian/grubx64.efi")).unwrap();
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

/// A copy of the test image with one more layer holding `files`.
fn image_with_files(dir: &Path, files: &[(&str, &[u8])]) -> String {
    let (src, tag) = oci_layout();
    let blob = |d: &str| {
        src.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(m["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        std::fs::hard_link(
            blob(d),
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap();
    }
    let put = |bytes: &[u8]| {
        let d = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&d), bytes).unwrap();
        format!("sha256:{d}")
    };
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut parent = String::new();
        for comp in Path::new(path).parent().unwrap().components() {
            parent = format!("{parent}{}/", comp.as_os_str().to_string_lossy());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &parent, &[][..]).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    let layer = b.into_inner().unwrap();
    let layer_digest = put(&layer);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(layer_digest.clone().into());
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config).into();
    manifest["config"]["size"] = config.len().into();
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()
    }));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "sealed"}}]}))
        .unwrap(),
    )
    .unwrap();
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
