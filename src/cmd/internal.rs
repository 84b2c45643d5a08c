//! `cbootc internal …`: commands run by cbootc's own systemd units.

use anyhow::Result;
use cbootc::deploy::lock::Lock;
use cbootc::deploy::stage;
use cbootc::host::{Host, HostPaths};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// Carry /etc changes made since `upgrade` into the staged deployment
    /// (cbootc-finalize.service, at shutdown).
    Finalize,
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
    }
}
