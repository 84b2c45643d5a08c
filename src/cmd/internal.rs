//! `cbootc internal …`: commands run by cbootc's own systemd units.

use anyhow::Result;
use cbootc::deploy::lock::Lock;
use cbootc::deploy::stage;
use cbootc::deploy::trial::{self, Trial};
use cbootc::host::{Host, HostPaths};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// Carry /etc changes made since `upgrade` into the staged deployment
    /// (cbootc-finalize.service, at shutdown).
    Finalize,
    /// Confirm a trial boot, or roll back automatically if it failed
    /// (cbootc-boot-complete.service, once the system is up).
    BootComplete,
}

pub fn run(c: InternalCommand) -> Result<()> {
    match c {
        InternalCommand::Finalize => {
            let paths = HostPaths::from_env();
            let _lock = Lock::acquire(&paths.run)?;
            let host = Host::open(paths)?;
            if let Some(id) = stage::finalize(&host)? {
                tracing::info!(
                    "carried /etc changes into the staged deployment {}",
                    &id[..12]
                );
            }
            Ok(())
        }
        InternalCommand::BootComplete => {
            let paths = HostPaths::from_env();
            let _lock = Lock::acquire(&paths.run)?;
            let mut host = Host::open(paths)?;
            match trial::boot_complete(&mut host)? {
                Trial::None => {}
                Trial::Confirmed(id) => {
                    tracing::info!("deployment {} booted: confirmed", &id[..12])
                }
                Trial::RolledBack { failed } => tracing::warn!(
                    "deployment {} did not finish booting; rolled back to {} automatically",
                    &failed[..12],
                    &host.booted[..12]
                ),
            }
            Ok(())
        }
    }
}
