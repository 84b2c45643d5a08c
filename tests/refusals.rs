//! Every refusal of `install to-disk`: a one-line error, a non-zero exit,
//! and the target byte-for-byte unchanged.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Snapshot of a target: absent, or its length and sha256.
fn snapshot(p: &Path) -> Option<(u64, String)> {
    p.exists()
        .then(|| (std::fs::metadata(p).unwrap().len(), file_sha256(p)))
}

/// Run install with `args`, expect failure mentioning `needle`, and the
/// target unchanged.
fn refused(target: &Path, args: &[&str], needle: &str) {
    let before = snapshot(target);
    let out = cbootc(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(
        err.contains(needle),
        "error for {args:?} should mention {needle:?}: {err}"
    );
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {err}");
    assert_eq!(snapshot(target), before, "target changed by {args:?}");
}

fn install_args<'a>(imgref: &'a str, disk: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["install", "to-disk", "--source", imgref];
    v.extend_from_slice(extra);
    v.push(disk);
    v
}

#[test]
fn refuses_bad_arguments_and_sources() {
    require_root();
    let work = scratch();
    let (_d, imgref) = oci::bootable_image(work.path(), "img");
    let disk = work.path().join("disk.raw");
    let d = path_str(&disk);

    refused(
        &disk,
        &install_args(&imgref, d, &["--size", "10X"]),
        "invalid size",
    );
    refused(&disk, &install_args(&imgref, d, &[]), "pass --size");
    refused(
        &disk,
        &install_args("ftp:/x", d, &["--size", "2G"]),
        "unknown image transport",
    );
    refused(
        &disk,
        &install_args("quay.io/x/y", d, &["--size", "2G"]),
        "no transport",
    );
    let missing = format!("oci:{}/nope:latest", work.path().display());
    refused(
        &disk,
        &install_args(&missing, d, &["--size", "2G"]),
        "not an OCI image layout",
    );
    refused(
        &disk,
        &install_args(&imgref, d, &["--size", "2G", "--karg", "root=/dev/sda"]),
        "cbootc sets root",
    );
    refused(
        &disk,
        &install_args(&imgref, d, &["--size", "300M"]),
        "too small",
    );
    refused(
        &disk,
        &install_args(
            &imgref,
            d,
            &[
                "--size",
                "2G",
                "--filesystem",
                "xfs",
                "--verity",
                "required",
            ],
        ),
        "xfs has no fs-verity",
    );
    // No --source outside a container.
    refused(
        &disk,
        &["install", "to-disk", "--size", "2G", d],
        "--source",
    );

    // The same refusals against an existing, blank file.
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    refused(
        &disk,
        &install_args(&imgref, d, &["--size", "1M"]),
        "does not shrink",
    );
    refused(
        &disk,
        &install_args(&missing, d, &["--size", "2G"]),
        "not an OCI image layout",
    );
}

#[test]
fn refuses_images_that_cannot_boot() {
    require_root();
    let work = scratch();
    let disk = work.path().join("disk.raw");
    let d = path_str(&disk);
    let cases: Vec<(&str, Vec<oci::Entry>, &str)> = vec![
        (
            "nokernel",
            oci::bootable_entries(&[])
                .into_iter()
                .filter(|e| !matches!(e, oci::Entry::File { path, .. } if path.contains("modules/")))
                .collect(),
            "no /usr/lib/modules/<kver>/vmlinuz",
        ),
        (
            "noinitrd",
            oci::bootable_entries(&[])
                .into_iter()
                .filter(|e| !matches!(e, oci::Entry::File { path, .. } if path.ends_with("initramfs.img")))
                .collect(),
            "no initramfs.img",
        ),
        (
            "nousr",
            vec![oci::dir("etc", 0o755), oci::dir("boot", 0o755), oci::dir("sysroot", 0o755)],
            "no /usr",
        ),
    ];
    for (name, entries, needle) in cases {
        let imgref = oci::write_layout(&work.path().join(name), "latest", &entries);
        refused(&disk, &install_args(&imgref, d, &["--size", "2G"]), needle);
    }
}

#[test]
fn refuses_existing_data_without_wipe() {
    require_root();
    let work = scratch();
    let (_d, imgref) = oci::bootable_image(work.path(), "img");

    // A partition table.
    let gpt_disk = work.path().join("gpt.raw");
    std::fs::write(&gpt_disk, vec![0u8; 64 << 20]).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["-q", path_str(&gpt_disk)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,,L\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    refused(
        &gpt_disk,
        &install_args(&imgref, path_str(&gpt_disk), &["--size", "2G"]),
        "--wipe",
    );

    // A filesystem.
    let fs_disk = work.path().join("fs.raw");
    std::fs::write(&fs_disk, vec![0u8; 64 << 20]).unwrap();
    sh("mkfs.ext4", &["-q", "-F", path_str(&fs_disk)]);
    refused(
        &fs_disk,
        &install_args(&imgref, path_str(&fs_disk), &["--size", "2G"]),
        "ext4",
    );

    // With --wipe the same disk installs.
    cbootc_ok(&install_args(
        &imgref,
        path_str(&fs_disk),
        &["--size", "2G", "--wipe"],
    ));
    let parts = partitions(&fs_disk);
    assert_eq!(parts.len(), 2);
}

#[test]
fn refuses_targets_in_use() {
    require_root();
    let work = scratch();
    let (_d, imgref) = oci::bootable_image(work.path(), "img");

    // A file backing a loop device.
    let busy = work.path().join("busy.raw");
    std::fs::write(&busy, vec![0u8; 64 << 20]).unwrap();
    let loopdev = sh("losetup", &["--find", "--show", path_str(&busy)])
        .trim()
        .to_string();
    let guard = LoopGuard(loopdev.clone());
    refused(
        &busy,
        &install_args(&imgref, path_str(&busy), &["--size", "2G", "--wipe"]),
        "loop",
    );

    // A block device with a mounted filesystem.
    sh("mkfs.ext4", &["-q", "-F", &loopdev]);
    let mnt = tempfile::tempdir().unwrap();
    sh("mount", &[&loopdev, path_str(mnt.path())]);
    let out = cbootc(&install_args(&imgref, &loopdev, &["--wipe"]));
    let err = stderr(&out);
    sh("umount", &[path_str(mnt.path())]);
    assert!(!out.status.success());
    assert!(err.contains("mounted"), "{err}");
    drop(guard);
    // The device's filesystem is intact.
    sh("e2fsck", &["-n", "-f", path_str(&busy)]);
}

struct LoopGuard(String);
impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn refuses_when_not_root() {
    require_root();
    let work = scratch();
    let (_d, imgref) = oci::bootable_image(work.path(), "img");
    let disk = work.path().join("disk.raw");
    let before = snapshot(&disk);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::cbootc_bin().to_str().unwrap(),
        ])
        .args([
            "install",
            "to-disk",
            "--source",
            &imgref,
            "--size",
            "2G",
            path_str(&disk),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must run as root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&disk), before);
}
