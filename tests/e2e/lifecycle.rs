//! The in-system lifecycle, by real reboots: install v1 (GRUB, ext4), boot
//! it, `cbootc switch` to v2 in a registry on the host, reboot into v2 (a
//! trial boot, confirmed), `cbootc rollback`, reboot into v1.
//!
//! The registry (the distribution registry on 127.0.0.1, behind a
//! byte-counting proxy) is reached by the guest as 10.0.2.2 through QEMU's
//! user-mode network; `/etc/containers/registries.conf` in the guest marks
//! it insecure (plain http).
//!
//! This test found that an upgrade pulled by a kernel with fs-verity into
//! a repository installed without it produced an image that could not boot
//! (composefs mounts an image file that has fs-verity with overlayfs
//! `verity=require`, and the old objects had none); `cbootc upgrade` now
//! enables fs-verity on every object where it can (`repo.rs`).
//!
//! Also seen: `systemctl is-enabled cbootc-update.timer` said "disabled"
//! although the timer ran, when the image enabled it with a
//! /usr/lib/systemd/system/timers.target.wants link, and `systemctl
//! disable` could not turn it off; the image now enables it in its /etc,
//! and the test checks that a user's `disable` survives the switch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::checks::{self, Expect, one_line};
use crate::common::registry::{CountingProxy, RegistryServer};
use crate::fixture::{self, Ctx, e2e, image, timing};
use crate::vm::{self, Vm};

/// The repository name in the test registry.
const REPO: &str = "cbootc-test";

/// `cbootc status --json`, parsed.
fn status(vm: &mut Vm) -> Result<serde_json::Value> {
    let out = vm.ok("cbootc status --json 2>/dev/null")?;
    serde_json::from_str(out.trim()).with_context(|| format!("cbootc status --json: {out}"))
}

/// The composefs id of `status.<which>`, or None when it is null.
fn status_id(st: &serde_json::Value, which: &str) -> Option<String> {
    let e = &st["status"][which];
    if e.is_null() {
        return None;
    }
    e["composefs"]["verity"].as_str().map(str::to_owned)
}

/// `booted`, `staged`, `rollback` of `cbootc status --json` must be these
/// ids (None: null).
fn expect_status(
    vm: &mut Vm,
    when: &str,
    booted: &str,
    staged: Option<&str>,
    rollback: Option<&str>,
) -> Result<serde_json::Value> {
    let st = status(vm)?;
    let got = (
        status_id(&st, "booted"),
        status_id(&st, "staged"),
        status_id(&st, "rollback"),
    );
    let want = (
        Some(booted.to_owned()),
        staged.map(str::to_owned),
        rollback.map(str::to_owned),
    );
    ensure!(
        got == want,
        "{when}: cbootc status --json has (booted, staged, rollback) = {got:?}, expected {want:?}:\n{st:#}"
    );
    Ok(st)
}

/// Run a cbootc command with its stdout and stderr (not a terminal: log
/// lines, no progress bars) collected in a file, and return rc + output.
fn cbootc(vm: &mut Vm, args: &str, timeout: Duration) -> Result<vm::Output> {
    vm.run_timeout(
        &format!("(cbootc {args} >/tmp/cbootc.out 2>&1; rc=$?; cat /tmp/cbootc.out; exit $rc)"),
        timeout,
    )
}

fn cbootc_ok(vm: &mut Vm, args: &str, timeout: Duration) -> Result<String> {
    let out = cbootc(vm, args, timeout)?;
    ensure!(
        out.rc == 0,
        "`cbootc {args}` exited {} in the guest:\n{}",
        out.rc,
        out.text
    );
    eprintln!("e2e: cbootc {args}:\n{}", out.text.trim_end());
    Ok(out.text)
}

/// The network is up and the registry answers from the guest.
fn wait_for_registry(vm: &mut Vm, port: u16) -> Result<()> {
    vm.ok_timeout(
        &format!(
            "for i in $(seq 120); do timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{port}' 2>/dev/null && break; sleep 1; done; timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{port}'"
        ),
        Duration::from_secs(240),
    )
    .context("the guest cannot reach the registry at 10.0.2.2 (user-mode network, DHCP)")?;
    Ok(())
}

/// Exactly the contents `want` in `file` in the guest.
fn expect_file(vm: &mut Vm, when: &str, file: &str, want: &str) -> Result<()> {
    let got = vm.run(&format!("cat {file}"))?;
    ensure!(
        got.rc == 0 && got.text.trim() == want,
        "{when}: {file} is {:?} (exit {}), expected {want:?}",
        got.text.trim(),
        got.rc
    );
    Ok(())
}

/// GRUB/ext4: install v1, switch to v2 from a registry, reboot into v2,
/// roll back, reboot into v1; /etc edits before and after the switch, /var,
/// the trial boot, the update service and `upgrade`'s "No update" on the way.
#[test]
#[ignore = "boots QEMU; run as root: cargo test --test e2e -- --ignored"]
fn lifecycle_switch_reboot_rollback() {
    e2e("lifecycle", |ctx: &mut Ctx| {
        let img = image()?;
        let v2 = fixture::image_v2()?;
        let v2_id = v2.id.clone();
        let v1_id = img.id.clone();

        let registry = RegistryServer::start(None);
        let t0 = Instant::now();
        registry.push(&v2.layout, &v2.tag, &format!("{REPO}:v2"), None, false);
        timing("lifecycle: skopeo push v2 to the registry", t0.elapsed());
        // The guest pulls through a counting proxy: bytes of the v2 pull.
        let proxy = CountingProxy::start(&registry.addr());
        let port = proxy.port;
        let v2_remote = format!("docker://10.0.2.2:{port}/{REPO}:v2");
        eprintln!("e2e: registry {} (guest: {v2_remote})", registry.addr());

        let inst = fixture::ext4_install()?;
        let net = vm::user_net();
        let verity = crate::host_verity();
        // The boots after the switch: deployment `id` of image `version`
        // booted, the record holding `order`, v2 tracked.
        let reboot = |ctx: &mut Ctx, boot: &str, id: &str, order: &[&str], version: &str| {
            let mut vm = ctx.boot_with(boot, &inst.disk, false, vec![], 2048, &net)?;
            checks::system_running(&mut vm)?;
            let exp = Expect {
                fs: "ext4",
                verity,
                tracked: &v2_remote,
                id,
            };
            booted_among(&mut vm, &exp, order, version)?;
            anyhow::Ok(vm)
        };

        // --- boot 1: v1, as installed.
        let mut vm = ctx.boot_with("boot1-v1", &inst.disk, true, vec![], 2048, &net)?;
        checks::deployment(
            &mut vm,
            &Expect {
                fs: "ext4",
                verity,
                tracked: &img.imgref,
                id: &v1_id,
            },
        )?;
        expect_status(&mut vm, "boot 1 (v1)", &v1_id, None, None)?;
        // The image enables the update timer in its /etc, as `systemctl
        // enable` does (README "Putting cbootc in an image"), so a user can
        // turn automatic updates off; the finalize service is enabled in
        // /usr. Both were started by the boot.
        vm.ok("systemctl is-active cbootc-update.timer cbootc-finalize.service")
            .context("the update timer or the finalize service is not active")?;
        let enabled = vm.run("systemctl is-enabled cbootc-update.timer")?;
        ensure!(
            enabled.text.trim() == "enabled",
            "systemctl is-enabled cbootc-update.timer: {:?}",
            enabled.text.trim()
        );
        // The user turns automatic updates off; v2 enables the timer in its
        // /etc too, and the choice must survive the switch (/etc merge: a
        // deletion from the image's /etc is kept).
        vm.ok("systemctl disable cbootc-update.timer 2>&1")?;
        vm.ok(&format!(
            "mkdir -p /etc/containers && printf '[[registry]]\\nlocation = \"10.0.2.2:{port}\"\\ninsecure = true\\n' > /etc/containers/registries.conf && cat /etc/containers/registries.conf"
        ))?;
        let token = uuid::Uuid::new_v4().to_string();
        vm.ok(&format!(
            "echo before > /etc/cbootc-e2e-before && echo {token} > /var/lib/cbootc-e2e-life && sync"
        ))?;
        wait_for_registry(&mut vm, port)?;

        proxy.take();
        let t0 = Instant::now();
        let out = cbootc_ok(
            &mut vm,
            &format!("switch {v2_remote}"),
            Duration::from_secs(1200),
        )?;
        let took = t0.elapsed();
        timing(
            "lifecycle: cbootc switch (pull v2 + stage) in the guest",
            took,
        );
        let pulled = proxy.take();
        eprintln!(
            "e2e: the v2 pull: {} bytes from the registry in {} requests, {:.1} s for the whole switch",
            pulled.bytes_to_client,
            pulled.requests.len(),
            took.as_secs_f64()
        );
        for r in &pulled.requests {
            eprintln!("e2e:   {r}");
        }
        ensure!(
            out.contains(&format!("Staged {}", &v2_id[..12])),
            "cbootc switch did not stage {}:\n{out}",
            &v2_id[..12]
        );
        // Staged v2; no rollback yet (the only other deployment is v2).
        expect_status(&mut vm, "after the switch", &v1_id, Some(&v2_id), None)?;
        let st = status(&mut vm)?;
        ensure!(
            st["spec"]["image"]["image"] == format!("10.0.2.2:{port}/{REPO}:v2")
                && st["spec"]["image"]["transport"] == "registry",
            "after the switch spec.image is {}",
            st["spec"]["image"]
        );
        // An /etc edit after the switch: carried to v2 at shutdown.
        vm.ok("echo after > /etc/cbootc-e2e-after && sync")?;
        ctx.shutdown(vm, "reboot")?;

        // --- boot 2: v2 (a trial boot).
        let mut vm = reboot(ctx, "boot2-v2", &v2_id, &[&v2_id, &v1_id], "v2")?;
        expect_file(&mut vm, "boot 2 (v2)", "/etc/cbootc-e2e-before", "before")?;
        expect_file(&mut vm, "boot 2 (v2)", "/etc/cbootc-e2e-after", "after")?;
        expect_file(&mut vm, "boot 2 (v2)", "/var/lib/cbootc-e2e-life", &token)?;
        vm.ok(&format!(
            "grep -q 10.0.2.2:{port} /etc/containers/registries.conf"
        ))
        .context("registries.conf did not reach v2")?;
        let enabled = vm.run("systemctl is-enabled cbootc-update.timer")?;
        ensure!(
            enabled.text.trim() == "disabled",
            "boot 2 (v2): the user disabled cbootc-update.timer on v1, and v2 says {:?}",
            enabled.text.trim()
        );
        expect_status(&mut vm, "boot 2 (v2)", &v2_id, None, Some(&v1_id))?;
        // The trial boot was confirmed.
        let complete = vm.ok(
            "systemctl show -p Result -p ExecMainStatus -p ActiveState cbootc-boot-complete.service",
        )?;
        ensure!(
            complete.contains("Result=success") && complete.contains("ExecMainStatus=0"),
            "cbootc-boot-complete.service: {complete}"
        );
        let journal = vm.ok("journalctl -b -u cbootc-boot-complete.service --no-pager -o cat")?;
        ensure!(
            journal.contains(&format!("deployment {} booted: confirmed", &v2_id[..12])),
            "cbootc-boot-complete.service did not confirm the trial boot:\n{journal}"
        );
        let env = vm.ok("grub-editenv /boot/grub/grubenv list")?;
        ensure!(
            !env.contains("cbootc_trial") && !env.contains("cbootc_tries"),
            "the trial variables are still in grubenv after boot-complete:\n{env}"
        );
        // The daily update: the tracked reference is still v2.
        let t0 = Instant::now();
        vm.ok_timeout(
            "systemctl start cbootc-update.service",
            Duration::from_secs(900),
        )
        .context("cbootc-update.service failed")?;
        timing("lifecycle: cbootc-update.service (no update)", t0.elapsed());
        let journal = vm.ok("journalctl -b -u cbootc-update.service --no-pager -o cat")?;
        ensure!(
            journal.contains("No update"),
            "cbootc-update.service did not say No update:\n{journal}"
        );
        expect_status(
            &mut vm,
            "boot 2 after the update service",
            &v2_id,
            None,
            Some(&v1_id),
        )?;

        let out = cbootc_ok(&mut vm, "rollback", Duration::from_secs(300))?;
        ensure!(
            out.contains(&format!("{} (", &v1_id[..12])) && out.contains("is now the default"),
            "cbootc rollback: {out}"
        );
        let st = status(&mut vm)?;
        ensure!(
            st["status"]["rollbackQueued"] == true
                && status_id(&st, "rollback").as_deref() == Some(v1_id.as_str()),
            "after cbootc rollback: {st:#}"
        );
        ctx.shutdown(vm, "reboot")?;

        // --- boot 3: v1 again.
        let mut vm = reboot(ctx, "boot3-v1", &v1_id, &[&v1_id, &v2_id], "v1")?;
        expect_file(&mut vm, "boot 3 (v1)", "/var/lib/cbootc-e2e-life", &token)?;
        expect_file(&mut vm, "boot 3 (v1)", "/etc/cbootc-e2e-before", "before")?;
        expect_status(&mut vm, "boot 3 (v1)", &v1_id, None, Some(&v2_id))?;
        wait_for_registry(&mut vm, port)?;
        let out = cbootc_ok(&mut vm, "upgrade", Duration::from_secs(900))?;
        ensure!(out.contains("No update"), "cbootc upgrade on v1: {out}");
        expect_status(&mut vm, "boot 3 after upgrade", &v1_id, None, Some(&v2_id))?;
        ctx.shutdown(vm, "poweroff")?;
        drop(proxy);
        drop(registry);
        Ok(())
    });
}

/// The checks of a boot after upgrades, switches or rollbacks, when the
/// system holds several deployments: `order` is the record's boot order
/// (ids), each with its BLS entry; the booted one is `exp.id`, its image's
/// /usr/lib/cbootc-test-version says `version`. Checks the kernel command
/// line (that deployment's id and entry, the kargs), `/` (its composefs
/// image, read-only), `/sysroot`, `/etc` (its own upper dir), `/var` (the
/// shared one), the record and the tracked reference. Expects
/// [`checks::system_running`] to have been checked.
pub fn booted_among(vm: &mut Vm, exp: &Expect, order: &[&str], version: &str) -> Result<()> {
    let id = exp.id;
    let cmdline = one_line(&vm.ok("cat /proc/cmdline")?);
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let want_digest = format!(
        "composefs.digest={}v1-sha512-12:{id}",
        if exp.verity { "" } else { "?" }
    );
    ensure!(
        args.contains(&want_digest.as_str()),
        "the kernel did not boot {want_digest}: {cmdline}"
    );
    checks::kargs_present(&args, &cmdline)?;

    // One BLS entry per deployment, the booted one exactly the command line.
    let entries = vm.ok("ls /boot/loader/entries")?;
    let mut got: Vec<&str> = entries.split_whitespace().collect();
    got.sort_unstable();
    let mut want: Vec<String> = order.iter().map(|d| format!("cbootc-{d}.conf")).collect();
    want.sort_unstable();
    ensure!(
        got == want,
        "/boot/loader/entries has {got:?}, expected {want:?}"
    );
    checks::booted_bls_entry(vm, id, &cmdline)?;
    for d in order {
        vm.ok(&format!(
            "test -s /boot/cbootc/{d}/vmlinuz && test -s /boot/cbootc/{d}/initramfs.img"
        ))
        .with_context(|| format!("the kernel and initramfs of {d} are not on the ESP"))?;
    }

    // / is the booted deployment's composefs image, read-only.
    let root = vm.ok("findmnt -n -o SOURCE,FSTYPE,OPTIONS /")?;
    let root: Vec<&str> = root.split_whitespace().collect();
    ensure!(
        root.len() == 3
            && root[0] == format!("composefs:{id}")
            && root[1] == "overlay"
            && root[2].starts_with("ro,"),
        "/ is {root:?}, expected a read-only overlay composefs:{id}"
    );
    let sysroot_fs = one_line(&vm.ok("findmnt -n -o FSTYPE /sysroot")?);
    ensure!(sysroot_fs == exp.fs, "/sysroot is {sysroot_fs}");
    for d in order {
        checks::image_digest(vm, d)?;
    }

    // The record: these deployments in this boot order.
    let record: serde_json::Value =
        serde_json::from_str(&vm.ok("cat /sysroot/state/cbootc/deployments.json")?)
            .context("deployments.json")?;
    let ids: Vec<&str> = record["deployments"]
        .as_array()
        .context("deployments.json without deployments")?
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    ensure!(
        ids == order,
        "deployments.json boot order {ids:?}, expected {order:?}"
    );
    checks::tracks(vm, exp.tracked)?;

    // /etc: this deployment's overlay; /var: the shared one.
    let probe = uuid::Uuid::new_v4().to_string();
    checks::etc_upper(vm, id, "cbootc-e2e-probe", &probe)?;
    vm.ok("rm /etc/cbootc-e2e-probe")?;
    let var = vm.ok("findmnt -n -o SOURCE /var")?;
    ensure!(
        var.trim().ends_with("[/state/os/default/var]"),
        "/var is {var:?}, expected the root filesystem's /state/os/default/var"
    );

    let tv = one_line(&vm.ok("cat /usr/lib/cbootc-test-version")?);
    ensure!(tv == version, "test image version {tv}, expected {version}");
    Ok(())
}
