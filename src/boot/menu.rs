//! The boot menu, generated from cbootc's deployment record.
//!
//! For every deployment the ESP holds its kernel and initramfs under
//! `cbootc/<id>/` and a BLS Type 1 entry `loader/entries/cbootc-<id>.conf`;
//! `grub/grub.cfg` lists the same entries as explicit `menuentry` blocks in
//! the record's order (the first is the default), so the menu does not
//! depend on the distribution's GRUB having the `blscfg` module.
//!
//! Write order is what keeps a crash harmless: kernels first, then entries,
//! then grub.cfg, each replaced atomically; anything a new grub.cfg names
//! already exists when it lands.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs_boot::cmdline::ComposefsCmdline;

use super::bls::BlsEntry;
use super::grub_cfg::{self, MenuEntry};
use super::grubenv;
use super::systemd_boot;
use crate::deploy::record::{Bootloader, Deployment, Record, Verity};
use crate::repo::ObjectId;
use crate::util::atomic;

/// Seconds the boot menu is shown.
pub const GRUB_TIMEOUT: u32 = 5;

/// ESP-relative directory of a deployment's kernel and initramfs.
pub fn kernel_dir(id: &str) -> String {
    format!("/cbootc/{id}")
}

/// File name of a deployment's BLS entry.
pub fn entry_file_name(id: &str) -> String {
    format!("cbootc-{id}.conf")
}

/// The composefs kernel argument for image `id`: format-V1 images are named
/// with `composefs.digest=v1-sha512-12:<hex>`; a leading `?` lets the
/// initramfs mount it without fs-verity.
pub fn composefs_karg(id: &str, verity: Verity) -> Result<String> {
    let digest = ObjectId::from_hex(id).with_context(|| format!("invalid image id {id:?}"))?;
    Ok(ComposefsCmdline::new_v1(digest, verity == Verity::Optional).to_cmdline_arg())
}

/// The full kernel command line of deployment `id`.
pub fn cmdline(record: &Record, id: &str) -> Result<String> {
    let mut args = vec![
        format!("root=UUID={}", record.root_uuid),
        "rw".to_string(),
        composefs_karg(id, record.verity)?,
    ];
    args.extend(record.kargs.iter().cloned());
    Ok(args.join(" "))
}

/// The full kernel command line of a deployment.
pub fn options(record: &Record, dep: &Deployment) -> Result<String> {
    cmdline(record, &dep.id)
}

/// Menu title: the OS name and version, plus a short id so two builds of
/// the same release can be told apart.
pub fn title(dep: &Deployment) -> String {
    format!("{} ({})", dep.title, &dep.id[..dep.id.len().min(12)])
}

fn bls_entry(record: &Record, dep: &Deployment, index: usize) -> Result<BlsEntry> {
    let dir = kernel_dir(&dep.id);
    Ok(BlsEntry {
        title: title(dep),
        version: dep.version.clone(),
        // systemd-boot and bootctl order by sort-key; keep theirs equal to
        // the record's order.
        sort_key: Some(format!("cbootc-{index:03}")),
        linux: format!("{dir}/vmlinuz"),
        initrd: vec![format!("{dir}/initramfs.img")],
        options: options(record, dep)?,
    })
}

/// The GRUB menu entry id of deployment `id` (`--id`, `next_entry`).
pub fn grub_entry_id(id: &str) -> String {
    format!("cbootc-{id}")
}

fn menu_entry(record: &Record, dep: &Deployment) -> Result<MenuEntry> {
    let dir = kernel_dir(&dep.id);
    Ok(MenuEntry {
        id: grub_entry_id(&dep.id),
        title: title(dep),
        linux: format!("{dir}/vmlinuz"),
        initrd: vec![format!("{dir}/initramfs.img")],
        options: options(record, dep)?,
    })
}

/// Write the boot menu for `record` into the ESP at `esp` and remove
/// entries of deployments no longer in the record. Each deployment's boot
/// files must already be in place.
pub fn write_menu(record: &Record, esp: &Path) -> Result<()> {
    match record.bootloader {
        Bootloader::Grub => write_grub_menu(record, esp),
        Bootloader::SystemdBoot => write_systemd_boot_menu(record, esp, None),
    }
}

/// systemd-boot: [`write_menu`] with the first deployment on trial: its
/// entry carries a boot counter and `loader.conf` defaults to any cbootc
/// entry (see [`systemd_boot::write_entries_with_trial`]).
pub fn write_systemd_boot_trial_menu(record: &Record, esp: &Path) -> Result<()> {
    write_systemd_boot_menu(record, esp, Some(&record.deployments[0].id))
}

/// systemd-boot: one Type #1 entry per deployment with `efi` pointing at
/// its UKI and cbootc's `sort-key`, and `loader.conf` naming the first as
/// default (see `systemd_boot.rs` for why not UKIs in `EFI/Linux/`), or,
/// with a `trial`, any cbootc entry in sort order. The editor is off under
/// Secure Boot.
fn write_systemd_boot_menu(record: &Record, esp: &Path, trial: Option<&str>) -> Result<()> {
    let editor = !record.secure_boot;
    let mut entries = Vec::new();
    for (i, dep) in record.deployments.iter().enumerate() {
        let entry = systemd_boot::UkiEntry {
            title: title(dep),
            version: dep.version.clone(),
            sort_key: systemd_boot::sort_key(i)?,
            efi: systemd_boot::uki_path(&dep.id),
            options: if editor {
                Some(cmdline(record, &dep.id)?)
            } else {
                None
            },
        };
        entries.push((dep.id.clone(), entry));
    }
    let conf = systemd_boot::LoaderConf {
        default: match trial {
            Some(_) => systemd_boot::ANY_CBOOTC_ENTRY.to_string(),
            None => systemd_boot::entry_file_name(&record.deployments[0].id),
        },
        timeout: GRUB_TIMEOUT,
        editor,
    };
    systemd_boot::write_entries_with_trial(esp, &entries, &conf, trial)
}

/// GRUB: BLS entries, grub.cfg and (if missing) grubenv.
fn write_grub_menu(record: &Record, esp: &Path) -> Result<()> {
    let entries_dir = esp.join("loader/entries");
    fs::create_dir_all(&entries_dir)
        .with_context(|| format!("creating {}", entries_dir.display()))?;
    let mut keep = Vec::new();
    for (i, dep) in record.deployments.iter().enumerate() {
        for f in ["vmlinuz", "initramfs.img"] {
            let p = esp_path(esp, &format!("{}/{f}", kernel_dir(&dep.id)));
            anyhow::ensure!(p.is_file(), "{} is missing", p.display());
        }
        let name = entry_file_name(&dep.id);
        let text = bls_entry(record, dep, i)?.render()?;
        atomic::write_file(&entries_dir.join(&name), text.as_bytes())?;
        keep.push(name);
    }

    let menu: Vec<MenuEntry> = record
        .deployments
        .iter()
        .map(|d| menu_entry(record, d))
        .collect::<Result<_>>()?;
    let cfg = grub_cfg::render(&menu, &record.esp_uuid, GRUB_TIMEOUT)?;
    let grub_dir = esp.join("grub");
    fs::create_dir_all(&grub_dir).with_context(|| format!("creating {}", grub_dir.display()))?;
    atomic::write_file(&grub_dir.join("grub.cfg"), cfg.as_bytes())?;
    let env = grub_dir.join("grubenv");
    if !env.exists() {
        atomic::write_file(&env, &grubenv::encode(&[])?)?;
    }

    // Stale entries go last, once nothing names them.
    for e in
        fs::read_dir(&entries_dir).with_context(|| format!("reading {}", entries_dir.display()))?
    {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("cbootc-") && name.ends_with(".conf") && !keep.contains(&name) {
            let p = entries_dir.join(&name);
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    atomic::sync_dir(&entries_dir)
}

/// `esp` joined with an ESP-absolute path like `/cbootc/<id>/vmlinuz`.
pub fn esp_path(esp: &Path, path: &str) -> PathBuf {
    esp.join(path.trim_start_matches('/'))
}
