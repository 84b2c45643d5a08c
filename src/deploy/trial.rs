//! Automatic rollback: a new deployment's first boot is a trial.
//!
//! `upgrade` sets three GRUB environment variables next to the new default:
//! `cbootc_trial` (the new entry), `cbootc_tries=1` and `cbootc_fallback`
//! (the entry booted when the upgrade was made). grub.cfg consumes the try
//! on the first boot (`cbootc_tries=0`) and, if it finds the try already
//! consumed, boots `cbootc_fallback` instead. Once the system is up,
//! `cbootc-boot-complete.service` runs [`boot_complete`]:
//!
//! - booted the trial deployment: the boot is confirmed, the variables are
//!   cleared;
//! - booted something else while a trial was pending: the trial failed
//!   (it hung, panicked or was reset before confirming). The failed
//!   deployment is moved behind the booted one in the record, marked
//!   `bootFailed`, and the menu regenerated — an automatic, persistent
//!   rollback. `upgrade` will not stage that image again.
//!
//! Choosing another entry by hand in the GRUB menu during a trial boot
//! therefore counts as a failed trial; that errs on the safe side.
//!
//! This is GRUB's counterpart of systemd's Automatic Boot Assessment, which
//! systemd-boot implements with boot counters in entry file names.

use std::path::PathBuf;

use anyhow::Result;

use crate::boot::{grubenv, menu};
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

/// Start a trial boot of the record's first deployment, falling back to
/// the booted one.
pub fn start(host: &Host) -> Result<()> {
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

/// Forget a pending trial (after a rollback changes the default).
pub fn cancel(host: &Host) -> Result<()> {
    let env = env_path(host);
    if env.exists() {
        grubenv::update(&env, &[], &VARS)?;
    }
    Ok(())
}

/// Confirm or roll back a pending trial, once the system is up.
pub fn boot_complete(host: &mut Host) -> Result<Trial> {
    let env = env_path(host);
    if !env.exists() {
        return Ok(Trial::None);
    }
    let vars = grubenv::decode(&std::fs::read(&env)?)?;
    let Some(trial) = vars
        .iter()
        .find(|(k, _)| k == "cbootc_trial")
        .map(|(_, v)| v.trim_start_matches("cbootc-").to_string())
    else {
        return Ok(Trial::None);
    };
    if trial == host.booted {
        grubenv::update(&env, &[], &VARS)?;
        return Ok(Trial::Confirmed(trial));
    }
    let Some(pos) = host.record.deployments.iter().position(|d| d.id == trial) else {
        // A trial of a deployment that no longer exists: stale.
        grubenv::update(&env, &[], &VARS)?;
        return Ok(Trial::None);
    };
    let mut failed = host.record.deployments.remove(pos);
    failed.boot_failed = true;
    host.record.move_to_front(&host.booted);
    host.record.deployments.insert(1, failed);
    host.record.save(&host.state.record())?;
    menu::write_menu(&host.record, host.esp())?;
    grubenv::update(&env, &[], &VARS)?;
    Ok(Trial::RolledBack { failed: trial })
}
