//! Rollback: make the previous deployment the default.
//!
//! Persistent rollback swaps the first two deployments of the record's boot
//! order, so running it again undoes it; with a staged upgrade it puts the
//! booted deployment back first (the upgrade is not booted, but kept as the
//! rollback). `--once` leaves the order alone and asks the bootloader to
//! boot the rollback deployment for the next boot only (GRUB `next_entry`,
//! systemd-boot `LoaderEntryOneShot`).

use anyhow::{Context, Result, bail};

use super::status::classify;
use crate::boot::{grubenv, menu, systemd_boot};
use crate::deploy::record::Bootloader;
use crate::host::Host;

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// The new default deployment, persistently.
    Default(String),
    /// The deployment booted once, next boot.
    Once(String),
}

/// Roll back on `host`.
pub fn rollback(host: &mut Host, once: bool) -> Result<Rollback> {
    if host.record.deployments.len() < 2 {
        bail!("there is no other deployment to roll back to");
    }
    host.check_esp()?;
    let env = host.esp().join("grub/grubenv");
    if once {
        let c =
            classify(&host.record, &host.booted).expect("Host::open checks the booted deployment");
        let Some(target) = c.rollback.or(c.staged) else {
            bail!("there is no other deployment to roll back to");
        };
        match host.record.bootloader {
            Bootloader::Grub => {
                let entry = menu::grub_entry_id(&target.id);
                grubenv::update(&env, &[("next_entry", entry.as_str())], &[])?;
            }
            Bootloader::SystemdBoot => {
                // systemd-boot reads and removes LoaderEntryOneShot itself.
                let vars = host.efivars().context(
                    "a one-shot boot needs the firmware's variables, and efivarfs is not writable here",
                )?;
                vars.set_one_shot(&systemd_boot::entry_file_name(&target.id))?;
            }
        }
        return Ok(Rollback::Once(target.id.clone()));
    }
    host.record.deployments.swap(0, 1);
    host.record.save(&host.state.record())?;
    menu::write_menu(&host.record, host.esp())?;
    // A pending one-shot or trial, or a firmware default, would contradict
    // the new order.
    if env.exists() {
        grubenv::update(&env, &[], &["next_entry"])?;
    }
    super::trial::cancel(host)?;
    host.sync_firmware_default()?;
    if host.record.bootloader == Bootloader::SystemdBoot
        && let Some(v) = host.efivars()
    {
        v.clear_one_shot()?;
    }
    Ok(Rollback::Default(host.record.deployments[0].id.clone()))
}
