//! Boot tests: install the Debian test image with the cbootc built from this
//! tree, boot the disks with QEMU + OVMF, and check the running systems over
//! the serial console.
//!
//! Ignored by default (each boot takes a minute or more under TCG). Run as
//! root, after `tests/e2e/setup-host.sh`:
//!
//! ```sh
//! cargo build --release
//! CBOOTC_TEST_BIN=target/release/cbootc \
//!     cargo test --test e2e -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! `tests/run-all.sh` does exactly this. `CBOOTC_TEST_BIN` is the cbootc
//! that installs and goes into the image (default: the one cargo built for
//! this test, debug unless `--release`). Console logs, install logs and
//! `timings.txt` go to `target/e2e-logs/`. The boots (see DESIGN.md "Boot
//! tests"):
//!
//! | test | boots |
//! |---|---|
//! | `ext4_boots_and_keeps_etc_and_var` | the `--source oci:` ext4 install, twice (reboot) |
//! | `podman_install_boots` | the README's `podman run … cbootc install to-disk` |
//! | `verity_required_install_in_guest` | the ext4 install with two more disks, installing `--verity required` in the guest; then that disk |
//! | `xfs_boots` | a `--filesystem xfs` install |
//! | `sdboot::one_shot_entry_boots_once` | an `--uki` install with a second entry, twice: the default, then a one-shot set by cbootc's efivars code in the guest |

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod fixture;
mod lifecycle;
mod sdboot;
mod uki;
mod vm;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use checks::Expect;
use fixture::{Ctx, KARGS, e2e, image, timing};
use vm::{Drive, Format};

/// Whether the host kernel can enable fs-verity on ext4: then cbootc's
/// default `--verity auto` makes host installs require it.
fn host_verity() -> bool {
    Path::new("/sys/fs/ext4/features/verity").exists()
}

fn verity_word(v: bool) -> &'static str {
    if v { "required" } else { "optional" }
}

/// Install lines cbootc logs at WARN level that are not known and accepted.
fn unexpected_warnings(log: &str, known: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN "))
        .filter(|l| !known.iter().any(|k| l.contains(k)))
        .map(str::to_owned)
        .collect()
}

/// Boot the plain ext4 install (`--source oci:`), check everything, edit
/// /etc (a new file and an existing one) and write to /var, reboot, and find
/// the same deployment with the edits.
#[test]
#[ignore = "boots QEMU; run as root: cargo test --test e2e -- --ignored"]
fn ext4_boots_and_keeps_etc_and_var() {
    e2e("ext4", |ctx: &mut Ctx| {
        let img = image()?;
        let inst = fixture::ext4_install()?;
        let verity = host_verity();
        ensure!(
            inst.log
                .contains(&format!("fs-verity {}", verity_word(verity))),
            "install log does not say fs-verity {}",
            verity_word(verity)
        );
        let bad = unexpected_warnings(&inst.log, &[]);
        ensure!(bad.is_empty(), "install warnings: {bad:#?}");

        let mut vm = ctx.boot("boot1", &inst.disk, true, vec![], 2048)?;
        let (dep, token) = checks::deployment(
            &mut vm,
            &Expect {
                fs: "ext4",
                verity,
                tracked: &img.imgref,
                id: &img.id,
            },
        )?;
        // An edit of a file the image ships, next to the new file.
        vm.ok(&format!("echo '# e2e {token}' >> /etc/motd && sync"))?;
        ctx.shutdown(vm, "reboot")?;

        let mut vm = ctx.boot("boot2", &inst.disk, false, vec![], 2048)?;
        checks::system_running(&mut vm)?;
        let root = vm.ok("findmnt -n -o SOURCE /")?;
        ensure!(
            root.trim() == format!("composefs:{}", dep.id),
            "after the reboot / is {root}"
        );
        for (file, want) in [
            ("/etc/cbootc-e2e", token.clone()),
            ("/var/lib/cbootc-e2e", token.clone()),
        ] {
            let got = vm.ok(&format!("cat {file}"))?;
            ensure!(
                got.trim() == want,
                "{file} after the reboot: {got:?}, expected {want}"
            );
        }
        let motd = vm.ok("tail -n 1 /etc/motd")?;
        ensure!(
            motd.trim() == format!("# e2e {token}"),
            "/etc/motd edit lost in the reboot: {motd:?}"
        );
        vm.ok(&format!(
            "grep -q '{token}' /sysroot/state/deploy/{}/etc/upper/motd",
            dep.id
        ))
        .context("the /etc edit is not in the deployment's upper dir")?;
        let uuid = vm.ok("findmnt -n -o UUID /sysroot")?;
        ensure!(uuid.trim() == dep.root_uuid, "root UUID changed: {uuid}");
        ctx.shutdown(vm, "poweroff")
    });
}

/// `--filesystem xfs` (fs-verity optional: xfs has none).
#[test]
#[ignore = "boots QEMU; run as root: cargo test --test e2e -- --ignored"]
fn xfs_boots() {
    e2e("xfs", |ctx: &mut Ctx| {
        let img = image()?;
        let inst = fixture::install("xfs", &["--filesystem", "xfs"])?;
        ensure!(
            inst.log.contains("fs-verity optional"),
            "xfs install log: verity?"
        );
        let bad = unexpected_warnings(&inst.log, &[]);
        ensure!(bad.is_empty(), "install warnings: {bad:#?}");
        let mut vm = ctx.boot("boot", &inst.disk, true, vec![], 2048)?;
        checks::deployment(
            &mut vm,
            &Expect {
                fs: "xfs",
                verity: false,
                tracked: &img.imgref,
                id: &img.id,
            },
        )?;
        ctx.shutdown(vm, "poweroff")
    });
}

/// Exactly as README tells users: the image in the host's
/// containers-storage, `podman run --privileged -v /var/lib/containers:…
/// IMAGE cbootc install to-disk /output/disk.raw` without `--source`.
#[test]
#[ignore = "boots QEMU; run as root: cargo test --test e2e -- --ignored"]
fn podman_install_boots() {
    e2e("podman", |ctx: &mut Ctx| {
        let img = image()?;
        let inst = fixture::podman_install("podman")?;
        let tracked = format!("docker://{}", fixture::PODMAN_IMAGE);
        ensure!(
            inst.log.contains(&format!("tracking {tracked}")),
            "the install does not track {tracked}"
        );
        // The staging repository is on the container's overlayfs, which the
        // kernel refuses as the file of a file-backed EROFS mount: the image
        // must be mounted through a loop device, not fall back to the
        // container's tools.
        ensure!(
            !inst.log.contains("cannot run the image's own tools"),
            "the install could not mount the image to run its tools"
        );
        let bad = unexpected_warnings(&inst.log, &[]);
        ensure!(bad.is_empty(), "install warnings: {bad:#?}");
        let mut vm = ctx.boot("boot", &inst.disk, true, vec![], 2048)?;
        checks::deployment(
            &mut vm,
            &Expect {
                fs: "ext4",
                verity: host_verity(),
                tracked: &tracked,
                id: &img.id,
            },
        )?;
        ctx.shutdown(vm, "poweroff")
    });
}

/// fs-verity end to end. The host kernel may lack fs-verity (the CI
/// machines' does), so the `--verity required` install runs inside a guest,
/// whose kernel has it: boot the ext4 install with a blank target disk and
/// a read-only ext4 disk holding the OCI layout, run the image's own
/// `cbootc install to-disk --verity required` there, then boot the target
/// and check that the image and every object carry fs-verity matching their
/// names.
#[test]
#[ignore = "boots QEMU; run as root: cargo test --test e2e -- --ignored"]
fn verity_required_install_in_guest() {
    e2e("verity", |ctx: &mut Ctx| {
        let img = image()?;
        let base = fixture::ext4_install()?;
        let layout = fixture::layout_disk()?;
        let target = fixture::env().work.join("disks/verity.raw");
        let _ = std::fs::remove_file(&target);
        std::fs::File::create(&target)?.set_len(4 << 30)?;
        fixture::remove_at_end(&target);

        let mut vm = ctx.boot(
            "installer",
            &base.disk,
            true,
            vec![
                Drive::new(&target, Format::Raw, "target"),
                Drive::new(&layout, Format::Raw, "oci").read_only(),
            ],
            3072,
        )?;
        checks::system_running(&mut vm)?;
        vm.ok("test -e /sys/fs/ext4/features/verity")
            .context("the guest kernel cannot enable fs-verity on ext4")?;
        vm.ok("mkdir -p /run/oci && mount -o ro /dev/disk/by-id/virtio-oci /run/oci")?;
        let kargs: Vec<String> = KARGS.iter().map(|k| format!("--karg {k}")).collect();
        let source = format!("oci:/run/oci:{}", img.tag);
        let t0 = Instant::now();
        let log = vm.ok_timeout(
            &format!(
                "cbootc install to-disk --source {source} \"$(readlink -f /dev/disk/by-id/virtio-target)\" --verity required {}",
                kargs.join(" ")
            ),
            Duration::from_secs(1800),
        )?;
        timing("verity: cbootc install to-disk in the guest", t0.elapsed());
        ensure!(
            log.contains("fs-verity required"),
            "the guest install does not say fs-verity required:\n{log}"
        );
        vm.ok("umount /run/oci && sync")?;
        ctx.shutdown(vm, "poweroff")?;

        let mut vm = ctx.boot("boot", &target, true, vec![], 2048)?;
        checks::deployment(
            &mut vm,
            &Expect {
                fs: "ext4",
                verity: true,
                tracked: &source,
                id: &img.id,
            },
        )?;
        let n = checks::verity_objects(&mut vm)?;
        eprintln!("e2e: verity: {n} objects, each with fs-verity matching its name");
        ctx.shutdown(vm, "poweroff")
    });
}
