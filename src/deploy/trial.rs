//! Automatic rollback: a new deployment's first boot is a trial.
//!
//! How the boot loader gives the trial one try and then falls back:
//!
//! - GRUB: `upgrade` sets three GRUB environment variables next to the new
//!   default: `cbootc_trial` (the new entry), `cbootc_tries=1` and
//!   `cbootc_fallback` (the entry booted when the upgrade was made).
//!   grub.cfg consumes the try on the first boot (`cbootc_tries=0`) and, if
//!   it finds the try already consumed, boots `cbootc_fallback` instead.
//! - systemd-boot: systemd's own Automatic Boot Assessment. The new entry is
//!   written as `cbootc-<id>+1.conf` (one try left) and `loader.conf`
//!   defaults to `cbootc-*`, the first cbootc entry in sort order. systemd-boot
//!   renames the entry to `+0-1` as it starts it, and sorts an entry with no
//!   tries left after all others, so the next boot after a failed trial
//!   starts the next deployment in the record (see
//!   [`crate::boot::systemd_boot::write_entries_with_trial`]).
//!
//! Once the system is up, `cbootc-boot-complete.service` runs
//! [`boot_complete`]:
//!
//! - booted the trial deployment: the boot is confirmed, the trial state
//!   cleared (the systemd-boot entry gets its plain name back, which is
//!   also what `systemd-bless-boot.service` would do: cbootc's unit runs
//!   first, and systemd-bless-boot then finds the work done);
//! - booted something else while a trial was pending: the trial failed
//!   (it hung, panicked or was reset before confirming). The failed
//!   deployment is moved behind the booted one in the record, marked
//!   `bootFailed`, and the menu regenerated — an automatic, persistent
//!   rollback. `upgrade` will not stage that image again.
//!
//! Choosing another entry by hand in the boot menu during a trial boot
//! therefore counts as a failed trial; that errs on the safe side.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::boot::{grubenv, menu, systemd_boot};
use crate::deploy::record::Bootloader;
use crate::host::Host;

/// The grubenv variables of a trial boot.
pub const VARS: [&str; 3] = ["cbootc_trial", "cbootc_tries", "cbootc_fallback"];

/// What [`boot_complete`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trial {
    /// No trial was pending.
    None,
    /// The trial deployment booted: confirmed.
    Confirmed(String),
    /// The trial deployment did not boot; the record now defaults to the
    /// booted one.
    RolledBack {
        /// The deployment that failed.
        failed: String,
    },
}

fn env_path(host: &Host) -> PathBuf {
    host.esp().join("grub/grubenv")
}

/// Write the menu with the record's first deployment as the default, on
/// trial: its first boot falls back to the booted one unless confirmed.
/// GRUB's trial variables go after grub.cfg, so a crash in between leaves a
/// plain new default.
pub fn start(host: &Host) -> Result<()> {
    match host.record.bootloader {
        Bootloader::Grub => {
            menu::write_menu(&host.record, host.esp())?;
            let new = menu::grub_entry_id(&host.record.deployments[0].id);
            let fallback = menu::grub_entry_id(&host.booted);
            grubenv::update(
                &env_path(host),
                &[
                    ("cbootc_trial", &new),
                    ("cbootc_tries", "1"),
                    ("cbootc_fallback", &fallback),
                ],
                &[],
            )
        }
        Bootloader::SystemdBoot => menu::write_systemd_boot_trial_menu(&host.record, host.esp()),
    }
}

/// The deployment on trial, if a trial is pending.
fn pending(host: &Host) -> Result<Option<String>> {
    match host.record.bootloader {
        Bootloader::Grub => {
            let env = env_path(host);
            if !env.exists() {
                return Ok(None);
            }
            let vars = grubenv::decode(
                &std::fs::read(&env).with_context(|| format!("reading {}", env.display()))?,
            )?;
            Ok(vars
                .iter()
                .find(|(k, _)| k == "cbootc_trial")
                .map(|(_, v)| v.trim_start_matches("cbootc-").to_string()))
        }
        Bootloader::SystemdBoot => {
            let dir = host.esp().join(systemd_boot::ENTRIES_DIR);
            if !dir.is_dir() {
                return Ok(None);
            }
            for e in
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let name = e?.file_name().to_string_lossy().into_owned();
                if let Some(entry) = systemd_boot::parse_entry_file_name(&name)
                    && entry.counter.is_some()
                {
                    return Ok(Some(entry.id));
                }
            }
            Ok(None)
        }
    }
}

/// End a pending trial: GRUB's variables go; systemd-boot's menu is
/// rewritten from the record without a boot counter.
fn clear(host: &Host) -> Result<()> {
    match host.record.bootloader {
        Bootloader::Grub => {
            let env = env_path(host);
            if env.exists() {
                grubenv::update(&env, &[], &VARS)?;
            }
            Ok(())
        }
        Bootloader::SystemdBoot => menu::write_menu(&host.record, host.esp()),
    }
}

/// Regenerate the menu from the record (e.g. after pruning) keeping a
/// pending trial of the first deployment pending: on systemd-boot the trial
/// lives in the entry's name, which a plain [`menu::write_menu`] would
/// reset. GRUB's trial lives in grubenv, which the menu leaves alone.
pub fn rewrite_menu(host: &Host) -> Result<()> {
    let first = &host.record.deployments[0].id;
    if host.record.bootloader == Bootloader::SystemdBoot && pending(host)?.as_ref() == Some(first) {
        return menu::write_systemd_boot_trial_menu(&host.record, host.esp());
    }
    menu::write_menu(&host.record, host.esp())
}

/// Forget a pending trial (after a rollback changes the default).
pub fn cancel(host: &Host) -> Result<()> {
    if pending(host)?.is_some() {
        clear(host)?;
    }
    Ok(())
}

/// Confirm or roll back a pending trial, once the system is up.
pub fn boot_complete(host: &mut Host) -> Result<Trial> {
    let Some(trial) = pending(host)? else {
        return Ok(Trial::None);
    };
    if trial == host.booted {
        clear(host)?;
        return Ok(Trial::Confirmed(trial));
    }
    let Some(pos) = host.record.deployments.iter().position(|d| d.id == trial) else {
        // A trial of a deployment that no longer exists: stale.
        clear(host)?;
        return Ok(Trial::None);
    };
    let mut failed = host.record.deployments.remove(pos);
    failed.boot_failed = true;
    host.record.move_to_front(&host.booted);
    host.record.deployments.insert(1, failed);
    host.record.save(&host.state.record())?;
    menu::write_menu(&host.record, host.esp())?;
    if host.record.bootloader == Bootloader::Grub {
        clear(host)?;
    }
    Ok(Trial::RolledBack { failed: trial })
}
