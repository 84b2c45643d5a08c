//! Assertions made inside a booted guest.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::fixture::{KARGS, env};
use crate::vm::Vm;

/// What a booted installation must look like.
pub struct Expect<'a> {
    /// Root filesystem type: ext4 or xfs.
    pub fs: &'a str,
    /// fs-verity required (kernel argument without `?`, every object and
    /// the image carry verity).
    pub verity: bool,
    /// The image reference the system tracks (`[image] ref` in
    /// /var/lib/cbootc/config.toml).
    pub tracked: &'a str,
    /// The composefs id the image must boot as.
    pub id: &'a str,
}

/// What the checks learned.
pub struct Deployment {
    pub id: String,
    pub root_uuid: String,
}

pub fn one_line(s: &str) -> String {
    s.trim().to_owned()
}

/// Every test install's kernel argument ([`KARGS`]) is among `args`, the
/// words of `cmdline`.
pub fn kargs_present(args: &[&str], cmdline: &str) -> Result<()> {
    for k in KARGS {
        ensure!(
            args.contains(k),
            "--karg {k} missing from /proc/cmdline: {cmdline}"
        );
    }
    Ok(())
}

/// The BLS entry of deployment `id` is the one GRUB booted: its `linux` is
/// the deployment's kernel and `cmdline` (/proc/cmdline) is exactly its
/// options after GRUB's `BOOT_IMAGE=`. Returns the entry's keys and values.
pub fn booted_bls_entry(vm: &mut Vm, id: &str, cmdline: &str) -> Result<BTreeMap<String, String>> {
    let bls = vm.ok(&format!("cat /boot/loader/entries/cbootc-{id}.conf"))?;
    let bls: BTreeMap<String, String> = bls
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let linux = format!("/cbootc/{id}/vmlinuz");
    ensure!(bls.get("linux") == Some(&linux), "BLS linux: {bls:?}");
    let options = bls.get("options").context("BLS entry without options")?;
    ensure!(
        cmdline == format!("BOOT_IMAGE={linux} {options}"),
        "the kernel command line is not the BLS entry's:\n  /proc/cmdline: {cmdline}\n  BLS options:   {options}"
    );
    Ok(bls)
}

/// The fs-verity digest of the composefs image `id` in the repository is
/// its name.
pub fn image_digest(vm: &mut Vm, id: &str) -> Result<()> {
    let image = format!("/sysroot/composefs/images/{id}");
    let digest = vm.ok(&format!(
        "fsverity digest --hash-alg=sha512 --block-size=4096 {image}"
    ))?;
    ensure!(
        digest.split_whitespace().next() == Some(&format!("sha512:{id}")),
        "the fs-verity digest of {image} is {digest}"
    );
    Ok(())
}

/// /var/lib/cbootc/config.toml tracks the image reference `tracked`.
pub fn tracks(vm: &mut Vm, tracked: &str) -> Result<()> {
    let config = vm.ok("cat /var/lib/cbootc/config.toml")?;
    ensure!(
        config.contains(&format!("ref = \"{tracked}\"")),
        "config.toml does not track {tracked}:\n{config}"
    );
    Ok(())
}

/// /etc is an overlay whose upper dir is deployment `id`'s: `value`
/// written to /etc/`name` lands there.
pub fn etc_upper(vm: &mut Vm, id: &str, name: &str, value: &str) -> Result<()> {
    let etc_fs = one_line(&vm.ok("findmnt -n -o FSTYPE /etc")?);
    ensure!(etc_fs == "overlay", "/etc is {etc_fs}");
    vm.ok(&format!("echo {value} > /etc/{name}"))
        .context("/etc is not writable")?;
    let upper = one_line(&vm.ok(&format!("cat /sysroot/state/deploy/{id}/etc/upper/{name}"))?);
    ensure!(
        upper == value,
        "/etc's upper dir has {upper:?}, expected {value}"
    );
    Ok(())
}

/// Wait for boot to finish; everything but `running` fails, with the failed
/// units.
pub fn system_running(vm: &mut Vm) -> Result<()> {
    let state = vm.run_timeout(
        "systemctl is-system-running --wait",
        Duration::from_secs(300),
    )?;
    let state = one_line(&state.text);
    if state != "running" {
        let failed = vm.run("systemctl --failed --no-legend --plain")?.text;
        let journal = vm
            .run("journalctl -b --no-pager -p warning | tail -n 40")?
            .text;
        bail!(
            "systemctl is-system-running: {state:?}, not \"running\"; failed units:\n{failed}\nwarnings in the journal:\n{journal}"
        );
    }
    Ok(())
}

/// The checks every boot of an installed disk passes. Leaves a token in
/// /etc/cbootc-e2e and /var/lib/cbootc-e2e (returned) for reboot tests.
pub fn deployment(vm: &mut Vm, exp: &Expect) -> Result<(Deployment, String)> {
    system_running(vm)?;

    // --- kernel command line: the composefs id, the verity mode, the kargs.
    let cmdline = one_line(&vm.ok("cat /proc/cmdline")?);
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let digest_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("composefs.digest="))
        .with_context(|| format!("no composefs.digest= on the kernel command line: {cmdline}"))?;
    let (optional, digest) = match digest_arg.strip_prefix('?') {
        Some(d) => (true, d),
        None => (false, digest_arg),
    };
    ensure!(
        optional != exp.verity,
        "composefs.digest={digest_arg}: expected fs-verity {}",
        if exp.verity {
            "required (no ?)"
        } else {
            "optional (?)"
        }
    );
    let id = digest
        .strip_prefix("v1-sha512-12:")
        .with_context(|| format!("composefs.digest={digest_arg}: not v1-sha512-12"))?;
    ensure!(
        id == exp.id,
        "the kernel boots composefs id {id}, but the image's id (composefs crates) is {}",
        exp.id
    );
    kargs_present(&args, &cmdline)?;
    let root_uuid = args
        .iter()
        .find_map(|a| a.strip_prefix("root=UUID="))
        .with_context(|| format!("no root=UUID= in {cmdline}"))?
        .to_owned();

    // --- the BLS entry GRUB booted: exactly its kernel and options.
    let entries = vm.ok("ls /boot/loader/entries")?;
    let want_entry = format!("cbootc-{id}.conf");
    ensure!(
        entries.split_whitespace().collect::<Vec<_>>() == [want_entry.as_str()],
        "/boot/loader/entries has {entries:?}, expected just {want_entry}"
    );
    let bls = booted_bls_entry(vm, id, &cmdline)?;
    ensure!(
        bls.get("initrd") == Some(&format!("/cbootc/{id}/initramfs.img")),
        "BLS initrd: {bls:?}"
    );
    ensure!(
        bls.get("title")
            .is_some_and(|t| t.starts_with("Debian GNU/Linux 13 (trixie)")),
        "BLS title: {bls:?}"
    );
    vm.ok(&format!(
        "test -s /boot/cbootc/{id}/vmlinuz && test -s /boot/cbootc/{id}/initramfs.img"
    ))
    .context("the kernel and initramfs of the entry are not on the ESP")?;
    let boot_fs = one_line(&vm.ok("findmnt -n -o FSTYPE /boot")?);
    ensure!(
        boot_fs == "vfat",
        "/boot is {boot_fs}, expected the ESP (vfat)"
    );
    let kver = one_line(&vm.ok("uname -r")?);
    let modules = one_line(&vm.ok("ls /usr/lib/modules")?);
    ensure!(
        kver == modules,
        "running kernel {kver}, image has {modules}"
    );

    // --- / is the composefs image: an overlay whose source composefs-rs
    // names after the image, with a data-only lower layer (the objects) and
    // metacopy; the EROFS itself is mounted detached (by fd), so it is
    // not in mountinfo.
    let root = vm.ok("findmnt -n -o SOURCE,FSTYPE,OPTIONS /")?;
    let root: Vec<&str> = root.split_whitespace().collect();
    ensure!(root.len() == 3, "findmnt /: {root:?}");
    ensure!(
        root[0] == format!("composefs:{id}") && root[1] == "overlay",
        "/ is {} {}, expected overlay composefs:{id}",
        root[1],
        root[0]
    );
    let opts: Vec<&str> = root[2].split(',').collect();
    ensure!(
        opts.first() == Some(&"ro")
            && opts.contains(&"metacopy=on")
            && opts
                .iter()
                .any(|o| o.starts_with("lowerdir=") && o.contains("::")),
        "/ mount options {}: expected ro, a lowerdir with a data-only layer (::), metacopy=on",
        root[2]
    );
    let touch = vm.run("touch /usr/lib/cbootc-e2e-probe")?;
    ensure!(
        touch.rc != 0 && touch.text.contains("Read-only file system"),
        "/usr is writable: {touch:?}"
    );

    // --- /sysroot is the root filesystem, /sysroot/composefs the repository
    // holding the image named on the command line.
    let sysroot = vm.ok("findmnt -n -o SOURCE,FSTYPE,UUID /sysroot")?;
    let sysroot: Vec<&str> = sysroot.split_whitespace().collect();
    ensure!(
        sysroot.len() == 3 && sysroot[1] == exp.fs && sysroot[2] == root_uuid,
        "/sysroot is {sysroot:?}, expected {} with UUID {root_uuid}",
        exp.fs
    );
    let meta: serde_json::Value = serde_json::from_str(&vm.ok("cat /sysroot/composefs/meta.json")?)
        .context("/sysroot/composefs/meta.json")?;
    ensure!(
        meta["algorithm"] == "fsverity-sha512-12",
        "repository meta.json: {meta}"
    );
    image_digest(vm, id)?;
    let image = format!("/sysroot/composefs/images/{id}");
    let measured = vm.run(&format!("fsverity measure {image}"))?;
    if exp.verity {
        ensure!(
            measured.rc == 0
                && measured.text.split_whitespace().next() == Some(&format!("sha512:{id}")),
            "fs-verity on {image}: {measured:?}"
        );
    }
    if exp.fs == "ext4" {
        let dev = sysroot[0];
        let features = vm.ok(&format!(
            "dumpe2fs -h {dev} 2>/dev/null | grep -i '^filesystem features'"
        ))?;
        ensure!(
            features.split_whitespace().any(|f| f == "verity"),
            "ext4 root made without the verity feature: {features}"
        );
    }

    // --- cbootc's record and config.
    let record: serde_json::Value =
        serde_json::from_str(&vm.ok("cat /sysroot/state/cbootc/deployments.json")?)
            .context("deployments.json")?;
    let want_verity = if exp.verity { "required" } else { "optional" };
    ensure!(
        record["verity"] == want_verity
            && record["rootUuid"] == root_uuid.as_str()
            && record["deployments"][0]["id"] == id
            && record["deployments"].as_array().map(Vec::len) == Some(1),
        "deployments.json: {record}"
    );
    tracks(vm, exp.tracked)?;

    // --- /etc: the deployment's overlay, writable, upper dir in its state.
    let token = uuid::Uuid::new_v4().to_string();
    etc_upper(vm, id, "cbootc-e2e", &token)?;

    // --- /var: the shared var of the root filesystem, through the
    // deployment's relative link.
    let var = vm.ok("findmnt -n -o SOURCE,FSTYPE /var")?;
    let var: Vec<&str> = var.split_whitespace().collect();
    ensure!(
        var.len() == 2 && var[0].ends_with("[/state/os/default/var]") && var[1] == exp.fs,
        "/var is {var:?}, expected the root filesystem's /state/os/default/var"
    );
    let link = one_line(&vm.ok(&format!("readlink /sysroot/state/deploy/{id}/var"))?);
    ensure!(
        link == "../../os/default/var",
        "state/deploy/{id}/var -> {link}"
    );
    vm.ok(&format!("echo {token} > /var/lib/cbootc-e2e"))?;
    let shared = one_line(&vm.ok("cat /sysroot/state/os/default/var/lib/cbootc-e2e")?);
    ensure!(
        shared == token,
        "shared var has {shared:?}, expected {token}"
    );

    // --- the image is the one built from this tree, with this tree's cbootc.
    let env = env();
    let version = one_line(&vm.ok("cbootc --version")?);
    ensure!(
        version == env.cbootc_version,
        "the image's cbootc says {version:?}, the host's {:?}",
        env.cbootc_version
    );
    let sum = vm.ok("sha256sum /usr/bin/cbootc")?;
    ensure!(
        sum.split_whitespace().next() == Some(env.cbootc_sha256.as_str()),
        "/usr/bin/cbootc in the guest is not the cbootc under test ({sum})"
    );
    let tv = one_line(&vm.ok("cat /usr/lib/cbootc-test-version")?);
    ensure!(tv == "v1", "test image version {tv}");

    // Informational until `cbootc status` exists.
    let status = vm.run("cbootc status")?;
    if status.rc == 0 {
        eprintln!(
            "e2e: cbootc status in the guest:\n{}",
            status.text.trim_end()
        );
    } else {
        eprintln!(
            "e2e: cbootc status in the guest: exit {} ({})",
            status.rc,
            status.text.lines().next().unwrap_or_default()
        );
    }

    Ok((
        Deployment {
            id: id.to_owned(),
            root_uuid,
        },
        token,
    ))
}

/// Every object in the repository has fs-verity enabled and is named by its
/// own fs-verity digest (objects/XX/REST, SHA-512, 4 KiB blocks). Returns
/// the number of objects.
pub fn verity_objects(vm: &mut Vm) -> Result<u64> {
    let out = vm.ok_timeout(
        "(set -o pipefail; cd /sysroot/composefs/objects && find . -type f -print0 | xargs -0 fsverity measure | awk '{ n++; split($2, p, \"/\"); if ($1 != \"sha512:\" p[2] p[3]) { bad++; if (bad <= 5) print \"MISMATCH\", $0 } } END { print \"objects\", n+0, \"mismatches\", bad+0 }')",
        Duration::from_secs(600),
    )?;
    let last = out.lines().last().unwrap_or_default();
    let f: Vec<&str> = last.split_whitespace().collect();
    ensure!(
        f.len() == 4 && f[0] == "objects" && f[2] == "mismatches",
        "unexpected output: {out}"
    );
    let n: u64 = f[1].parse()?;
    ensure!(
        f[3] == "0",
        "objects whose fs-verity digest is not their name:\n{out}"
    );
    ensure!(n > 1000, "only {n} objects in the repository");
    Ok(n)
}
