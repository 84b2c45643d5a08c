//! `cbootc install to-disk` on raw disk files, checked with independent
//! tools. Runs as root (loop devices, mounts).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const ROOT_X86_64_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

fn blkid(dev_or_file: &str, offset: u64, tag: &str) -> String {
    sh(
        "blkid",
        &[
            "-p",
            "-O",
            &offset.to_string(),
            "-s",
            tag,
            "-o",
            "value",
            dev_or_file,
        ],
    )
    .trim()
    .to_string()
}

/// Where install stages the image (`$TMPDIR`).
#[derive(PartialEq)]
enum Staging {
    /// The default, `/var/tmp`.
    VarTmp,
    /// A tmpfs: like the container's overlayfs `/var/tmp` under `podman
    /// run`, a filesystem the kernel refuses as the file of a file-backed
    /// EROFS mount ("Block device required").
    Tmpfs,
}

/// A tmpfs mounted on `dir` (created), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf) -> Tmpfs {
        std::fs::create_dir(&dir).unwrap();
        sh("mount", &["-t", "tmpfs", "tmpfs", path_str(&dir)]);
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Install the test image, staged as `staging` says, and check everything
/// on the disk.
fn install_and_check(fs_type: &str, staging: Staging) {
    require_root();
    let work = scratch();
    let (_img_dir, imgref) = oci::bootable_image(work.path(), "img");
    let disk = work.path().join("disk.raw");
    let tmpfs = (staging == Staging::Tmpfs).then(|| Tmpfs::mount(work.path().join("staging")));
    let env: Vec<(&str, &Path)> = tmpfs.iter().map(|t| ("TMPDIR", t.0.as_path())).collect();
    let out = cbootc_env_ok(
        &[
            "install",
            "to-disk",
            "--source",
            &imgref,
            "--target-imgref",
            "docker://registry.example/os:stable",
            "--filesystem",
            fs_type,
            "--karg",
            "console=ttyS0",
            "--size",
            "2G",
            path_str(&disk),
        ],
        &env,
    );
    drop(tmpfs);
    let log = stderr(&out);
    assert!(
        log.contains("qemu-system-x86_64"),
        "final message says how to boot: {log}"
    );
    assert!(
        !log.contains("cannot run the image's own tools"),
        "the image was not mounted: {log}"
    );
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 2 << 30);

    let id = independent_boot_id(&imgref);
    assert_eq!(id.len(), 128);

    // Partition table.
    let parts = partitions(&disk);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (esp, root) = (&parts[0], &parts[1]);
    assert_eq!(esp.type_guid, ESP_TYPE);
    assert_eq!(root.type_guid, ROOT_X86_64_TYPE);
    assert_eq!(esp.name, "ESP");
    assert_eq!(root.name, "root");
    assert_eq!(esp.offset(), 1 << 20, "ESP starts at 1 MiB");
    assert_eq!(esp.bytes(), 1 << 30, "default ESP is 1 GiB");
    assert_eq!(root.offset() % (1 << 20), 0, "root is MiB-aligned");
    assert!(root.offset() >= esp.offset() + esp.bytes());
    assert!(root.offset() + root.bytes() <= (2 << 30) - 33 * 512);

    // Filesystems.
    let d = path_str(&disk);
    assert_eq!(blkid(d, esp.offset(), "TYPE"), "vfat");
    assert_eq!(blkid(d, root.offset(), "TYPE"), fs_type);
    assert_eq!(blkid(d, root.offset(), "LABEL"), "root");
    let root_uuid = blkid(d, root.offset(), "UUID");
    let esp_uuid = blkid(d, esp.offset(), "UUID");

    // ESP content.
    let fat = Esp::new(&disk, esp);
    let efi = fat.read("/EFI/BOOT/BOOTX64.EFI");
    assert_eq!(&efi[..2], b"MZ", "GRUB is a PE binary");
    let entry_name = format!("cbootc-{id}.conf");
    assert_eq!(fat.ls("/loader/entries"), vec![entry_name.clone()]);
    let entry = String::from_utf8(fat.read(&format!("/loader/entries/{entry_name}"))).unwrap();
    assert!(
        entry.contains("title Cbootc Test OS 42.1 (Testing)"),
        "{entry}"
    );
    assert!(entry.contains("version 42.1"), "{entry}");
    assert!(!entry.contains("todoOS"), "{entry}");
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .expect("options line");
    let args: Vec<&str> = options.split_whitespace().collect();
    assert!(
        args.contains(&format!("root=UUID={root_uuid}").as_str()),
        "{options}"
    );
    assert!(args.contains(&"rw"), "{options}");
    assert!(args.contains(&"console=ttyS0"), "{options}");
    // This host's kernel has no fs-verity: verity is optional, marked `?`.
    let karg = format!("composefs.digest=?v1-sha512-12:{id}");
    assert!(args.contains(&karg.as_str()), "{options}");
    assert!(
        entry.contains(&format!("linux /cbootc/{id}/vmlinuz")),
        "{entry}"
    );

    let kernel = fat.read(&format!("/cbootc/{id}/vmlinuz"));
    assert_eq!(kernel, oci::filler(b"KERNEL", 300_000));
    let initrd = fat.read(&format!("/cbootc/{id}/initramfs.img"));
    assert_eq!(initrd, oci::filler(b"INITRD", 500_000));

    let grub_cfg = String::from_utf8(fat.read("/grub/grub.cfg")).unwrap();
    assert!(grub_cfg.contains(&karg), "{grub_cfg}");
    assert!(
        grub_cfg.contains(&format!("root=UUID={root_uuid}")),
        "{grub_cfg}"
    );
    assert!(grub_cfg.contains(&esp_uuid), "{grub_cfg}");
    assert!(!grub_cfg.contains("blscfg"), "{grub_cfg}");

    let env_copy = work.path().join("grubenv");
    fat.get("/grub/grubenv", &env_copy);
    assert_eq!(std::fs::metadata(&env_copy).unwrap().len(), 1024);
    sh("grub-editenv", &[path_str(&env_copy), "list"]);

    // Root filesystem content.
    let m = Mounted::new(&disk, root);
    let r = m.path();
    assert!(r.join("composefs/meta.json").is_file());
    assert!(
        r.join(format!("composefs/images/{id}")).exists(),
        "repository holds images/<id>"
    );
    let dep = r.join(format!("state/deploy/{id}"));
    assert!(dep.join("etc/upper").is_dir());
    assert!(dep.join("etc/work").is_dir());
    let var = dep.join("var");
    assert_eq!(
        std::fs::read_link(&var).unwrap(),
        Path::new("../../os/default/var")
    );
    let state = var.join("lib/testapp/state");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "state from the image\n"
    );
    let md = std::fs::metadata(&state).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (123, 456, 0o640));
    assert_eq!(
        std::fs::read_link(var.join("lib/testapp/link")).unwrap(),
        Path::new("state")
    );
    let tmp_mode = std::fs::metadata(var.join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777, "/var/tmp keeps its sticky bit");
    let config = std::fs::read_to_string(var.join("lib/cbootc/config.toml")).unwrap();
    assert!(
        config.contains("ref = \"docker://registry.example/os:stable\""),
        "{config}"
    );
    let unit = std::fs::read_to_string(dep.join("etc/upper/systemd/system/boot.mount")).unwrap();
    assert!(
        unit.contains(&format!("What=/dev/disk/by-uuid/{esp_uuid}")),
        "{unit}"
    );
    assert!(
        dep.join("etc/upper/systemd/system/local-fs.target.wants/boot.mount")
            .exists()
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join("state/cbootc/deployments.json")).unwrap())
            .unwrap();
    assert_eq!(record["deployments"][0]["id"], id.as_str());
    assert_eq!(record["rootUuid"], root_uuid.as_str());
    assert_eq!(record["verity"], "optional");
}

#[test]
fn install_ext4() {
    install_and_check("ext4", Staging::VarTmp);
}

#[test]
fn install_xfs() {
    install_and_check("xfs", Staging::VarTmp);
}

#[test]
fn install_btrfs() {
    install_and_check("btrfs", Staging::VarTmp);
}

#[test]
fn install_staged_on_tmpfs() {
    install_and_check("ext4", Staging::Tmpfs);
}
