//! status, upgrade, switch, rollback and pruning on a simulated host made
//! by a real `install to-disk`.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use common::host::SimHost;
use common::*;

/// Install `latest` (= v1) of a layout and return (work dir, layout dir,
/// disk path).
fn installed() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    require_root();
    let work = scratch();
    let layout = work.path().join("os");
    let r = oci::versioned_image(&layout, "latest", "v1", &[]);
    let disk = work.path().join("disk.raw");
    cbootc_ok(&[
        "install",
        "to-disk",
        "--source",
        &r,
        "--size",
        "2G",
        "--karg",
        "console=ttyS0",
        path_str(&disk),
    ]);
    (work, layout, disk)
}

fn id_of(layout: &Path, tag: &str) -> String {
    independent_boot_id(&format!("oci:{}:{tag}", layout.display()))
}

fn mknod_whiteout(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
}

#[test]
fn upgrade_rollback_and_etc_carry_forward() {
    let (_work, layout, disk) = installed();
    let host = SimHost::new(&disk);
    let v1 = id_of(&layout, "latest");

    // Booted v1: status says so.
    let st = host.status_json();
    assert_eq!(st["status"]["booted"]["composefs"]["verity"], v1.as_str());
    assert!(st["status"]["staged"].is_null());
    let text = host.cbootc_ok(&["status"]);
    assert!(text.contains("Booted:"), "{text}");

    // No-op upgrade: the tracked image is the booted one.
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(out.contains("No update"), "{out}");
    assert_eq!(host.record_ids(), vec![v1.clone()]);

    // The user edits /etc: a changed file, a new file, a deleted file.
    let up = host.upper(&v1);
    std::fs::write(up.join("hostname"), "mine\n").unwrap();
    std::fs::write(up.join("user.conf"), "user\n").unwrap();
    mknod_whiteout(&up.join("motd"));

    // v2 is published under the tracked tag.
    oci::versioned_image(&layout, "latest", "v2", &[]);
    let v2 = id_of(&layout, "latest");
    assert_ne!(v1, v2);
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(out.contains("Staged"), "{out}");
    assert_eq!(host.record_ids(), vec![v2.clone(), v1.clone()]);
    let grub = std::fs::read_to_string(host.esp.join("grub/grub.cfg")).unwrap();
    let (p2, p1) = (
        grub.find(&format!("--id 'cbootc-{v2}'")),
        grub.find(&format!("--id 'cbootc-{v1}'")),
    );
    assert!(
        p2.is_some() && p1.is_some() && p2 < p1,
        "v2 listed first: {grub}"
    );
    assert!(host.esp.join(format!("cbootc/{v2}/vmlinuz")).is_file());
    assert!(
        host.esp
            .join(format!("loader/entries/cbootc-{v2}.conf"))
            .is_file()
    );
    let up2 = host.upper(&v2);
    assert_eq!(
        std::fs::read_to_string(up2.join("hostname")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(up2.join("user.conf")).unwrap(),
        "user\n"
    );
    assert!(
        std::fs::symlink_metadata(up2.join("motd"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(
        !up2.join("image.conf").exists(),
        "the image's new image.conf shows through"
    );
    assert!(
        up2.join("systemd/system/boot.mount").is_file(),
        "the ESP mount unit comes along"
    );
    let st = host.status_json();
    assert_eq!(st["status"]["staged"]["composefs"]["verity"], v2.as_str());

    // An edit after the upgrade, carried by finalize at shutdown.
    std::fs::write(up.join("late.conf"), "late\n").unwrap();
    host.cbootc_ok(&["internal", "finalize"]);
    assert_eq!(
        std::fs::read_to_string(up2.join("late.conf")).unwrap(),
        "late\n"
    );

    // Upgrading again: already staged.
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(out.contains("already staged"), "{out}");

    // Reboot into v2.
    host.boot(&v2);
    let st = host.status_json();
    assert_eq!(st["status"]["booted"]["composefs"]["verity"], v2.as_str());
    assert_eq!(st["status"]["rollback"]["composefs"]["verity"], v1.as_str());
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(out.contains("No update"), "{out}");

    // Rollback, and rollback again undoes it.
    host.cbootc_ok(&["rollback"]);
    assert_eq!(host.record_ids(), vec![v1.clone(), v2.clone()]);
    let grub = std::fs::read_to_string(host.esp.join("grub/grub.cfg")).unwrap();
    assert!(grub.find(&format!("cbootc-{v1}")) < grub.find(&format!("cbootc-{v2}")));
    let st = host.status_json();
    assert_eq!(st["status"]["rollbackQueued"], true);
    host.cbootc_ok(&["rollback"]);
    assert_eq!(host.record_ids(), vec![v2.clone(), v1.clone()]);

    // One-shot rollback: the order stays, grubenv names v1 once.
    host.cbootc_ok(&["rollback", "--once"]);
    assert_eq!(host.record_ids(), vec![v2.clone(), v1.clone()]);
    let env = sh(
        "grub-editenv",
        &[path_str(&host.esp.join("grub/grubenv")), "list"],
    );
    assert!(env.contains(&format!("next_entry=cbootc-{v1}")), "{env}");
    // A persistent rollback clears a pending one-shot.
    host.cbootc_ok(&["rollback"]);
    let env = sh(
        "grub-editenv",
        &[path_str(&host.esp.join("grub/grubenv")), "list"],
    );
    assert!(!env.contains("next_entry"), "{env}");
}

#[test]
fn pruning_keeps_booted_new_and_rollback() {
    let (_work, layout, disk) = installed();
    let host = SimHost::new(&disk);
    let mut ids = vec![id_of(&layout, "latest")];
    for v in ["v2", "v3", "v4"] {
        oci::versioned_image(&layout, "latest", v, &[]);
        host.cbootc_ok(&["upgrade"]);
        let id = id_of(&layout, "latest");
        host.boot(&id);
        ids.push(id);
    }
    // Default keep = 3: v4 (booted), v3, v2; v1 is gone everywhere.
    assert_eq!(
        host.record_ids(),
        vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]
    );
    let v1 = &ids[0];
    assert!(!host.esp.join(format!("cbootc/{v1}")).exists());
    assert!(
        !host
            .esp
            .join(format!("loader/entries/cbootc-{v1}.conf"))
            .exists()
    );
    assert!(!host.root.join(format!("state/deploy/{v1}")).exists());
    assert!(
        !host.root.join(format!("composefs/images/{v1}")).exists(),
        "gc removed v1's image"
    );
    assert!(
        host.root
            .join(format!("composefs/images/{}", ids[1]))
            .exists()
    );
    let grub = std::fs::read_to_string(host.esp.join("grub/grub.cfg")).unwrap();
    assert!(!grub.contains(v1.as_str()));

    // keep = 2 from the config.
    let cfg = std::fs::read_to_string(host.config_path()).unwrap();
    assert!(cfg.contains("keep = 3"), "{cfg}");
    std::fs::write(host.config_path(), cfg.replace("keep = 3", "keep = 2")).unwrap();
    oci::versioned_image(&layout, "latest", "v5", &[]);
    host.cbootc_ok(&["upgrade"]);
    let v5 = id_of(&layout, "latest");
    assert_eq!(host.record_ids(), vec![v5, ids[3].clone()], "new + booted");
}

#[test]
fn refusals_change_nothing() {
    let (work, layout, disk) = installed();
    let host = SimHost::new(&disk);
    let v1 = id_of(&layout, "latest");
    let snapshot = || {
        (
            host.record_ids(),
            std::fs::read(host.esp.join("grub/grub.cfg")).unwrap(),
            std::fs::read_to_string(host.config_path()).unwrap(),
        )
    };

    // /etc conflict: the user has a file where v2 has a directory.
    std::fs::write(host.upper(&v1).join("conf.d"), "user file\n").unwrap();
    oci::versioned_image(
        &layout,
        "latest",
        "v2",
        &[
            oci::dir("etc/conf.d", 0o755),
            oci::file("etc/conf.d/a.conf", b"a"),
        ],
    );
    let before = snapshot();
    let out = host.cbootc(&["upgrade"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("/etc/conf.d (you have a file where the new image has a directory)"),
        "{err}"
    );
    assert_eq!(snapshot(), before);
    std::fs::remove_file(host.upper(&v1).join("conf.d")).unwrap();

    // switch to a reference that cannot be pulled: config unchanged.
    let bad = format!("oci:{}/missing:latest", work.path().display());
    let out = host.cbootc(&["switch", &bad]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an OCI image layout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(), before);

    // Lock contention: a second command exits with a clear message.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(host.run.join("cbootc.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = host.cbootc(&["upgrade"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another cbootc command is running"),
        "{}",
        stderr(&out)
    );
    drop(lock);
    assert_eq!(snapshot(), before);

    // Not booted from composefs.
    host.boot_with("root=/dev/sda1 rw");
    let out = host.cbootc_ok(&["status"]);
    assert!(
        out.contains("not booted from a composefs deployment"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&host.cbootc_ok(&["status", "--json"])).unwrap();
    assert!(v["status"]["booted"].is_null());
    let out = host.cbootc(&["upgrade"]);
    assert!(!out.status.success());
    assert_eq!(snapshot(), before);
}

#[test]
fn switch_tracks_the_new_reference() {
    let (work, _layout, disk) = installed();
    let host = SimHost::new(&disk);
    let other = work.path().join("other");
    let r = oci::versioned_image(&other, "stable", "other-1", &[]);
    let out = host.cbootc_ok(&["switch", &r]);
    assert!(out.contains("Staged"), "{out}");
    let cfg = std::fs::read_to_string(host.config_path()).unwrap();
    assert!(cfg.contains(&format!("ref = \"{r}\"")), "{cfg}");
    let st = host.status_json();
    assert_eq!(st["spec"]["image"]["transport"], "oci");
    assert_eq!(
        st["status"]["staged"]["composefs"]["verity"],
        id_of(&other, "stable").as_str()
    );
}

fn grubenv_list(host: &SimHost) -> String {
    sh(
        "grub-editenv",
        &[path_str(&host.esp.join("grub/grubenv")), "list"],
    )
}

#[test]
fn trial_boot_confirmed_or_rolled_back_automatically() {
    let (_work, layout, disk) = installed();
    let host = SimHost::new(&disk);
    let v1 = id_of(&layout, "latest");
    oci::versioned_image(&layout, "latest", "v2", &[]);
    let v2 = id_of(&layout, "latest");
    host.cbootc_ok(&["upgrade"]);
    let env = grubenv_list(&host);
    assert!(env.contains(&format!("cbootc_trial=cbootc-{v2}")), "{env}");
    assert!(env.contains("cbootc_tries=1"), "{env}");
    assert!(
        env.contains(&format!("cbootc_fallback=cbootc-{v1}")),
        "{env}"
    );

    // GRUB consumed the try and v2 never confirmed: the next boot fell back
    // to v1, whose boot-complete rolls back for good.
    sh(
        "grub-editenv",
        &[
            path_str(&host.esp.join("grub/grubenv")),
            "set",
            "cbootc_tries=0",
        ],
    );
    host.boot(&v1);
    host.cbootc_ok(&["internal", "boot-complete"]);
    assert_eq!(host.record_ids(), vec![v1.clone(), v2.clone()]);
    assert_eq!(host.record()["deployments"][1]["bootFailed"], true);
    assert!(!grubenv_list(&host).contains("cbootc_trial"));
    let grub = std::fs::read_to_string(host.esp.join("grub/grub.cfg")).unwrap();
    assert!(grub.find(&format!("cbootc-{v1}")) < grub.find(&format!("cbootc-{v2}")));
    let text = host.cbootc_ok(&["status"]);
    assert!(text.contains("FAILED TO BOOT"), "{text}");
    // The failed image is not staged again.
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(out.contains("failed to boot here"), "{out}");
    assert_eq!(host.record_ids(), vec![v1.clone(), v2.clone()]);

    // A newer image is staged, and this time its trial boot succeeds.
    oci::versioned_image(&layout, "latest", "v3", &[]);
    let v3 = id_of(&layout, "latest");
    host.cbootc_ok(&["upgrade"]);
    assert!(grubenv_list(&host).contains(&format!("cbootc_trial=cbootc-{v3}")));
    sh(
        "grub-editenv",
        &[
            path_str(&host.esp.join("grub/grubenv")),
            "set",
            "cbootc_tries=0",
        ],
    );
    host.boot(&v3);
    host.cbootc_ok(&["internal", "boot-complete"]);
    assert_eq!(host.record_ids()[0], v3);
    assert!(!grubenv_list(&host).contains("cbootc_trial"));

    // A rollback cancels a pending trial.
    oci::versioned_image(&layout, "latest", "v4", &[]);
    host.cbootc_ok(&["upgrade"]);
    assert!(grubenv_list(&host).contains("cbootc_trial"));
    host.cbootc_ok(&["rollback"]);
    assert!(!grubenv_list(&host).contains("cbootc_trial"));
}

#[test]
fn upgrade_respects_a_rollback_and_switch_overrides_it() {
    let (_work, layout, disk) = installed();
    let host = SimHost::new(&disk);
    let v1 = id_of(&layout, "latest");
    oci::versioned_image(&layout, "latest", "v2", &[]);
    let v2 = id_of(&layout, "latest");
    host.cbootc_ok(&["upgrade"]);
    host.boot(&v2);
    host.cbootc_ok(&["internal", "boot-complete"]);
    host.cbootc_ok(&["rollback"]);
    host.boot(&v1);
    // Back on v1, still tracking the tag that is v2: the daily upgrade must
    // not undo the rollback.
    let out = host.cbootc_ok(&["upgrade"]);
    assert!(
        out.contains("older deployment still on this system"),
        "{out}"
    );
    assert_eq!(host.record_ids(), vec![v1.clone(), v2.clone()]);
    // An explicit switch does stage it.
    let r = format!("oci:{}:latest", layout.display());
    let out = host.cbootc_ok(&["switch", &r]);
    assert!(out.contains("Staged"), "{out}");
    assert_eq!(host.record_ids(), vec![v2, v1]);
}
