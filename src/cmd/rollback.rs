//! `cbootc rollback`.

use anyhow::Result;
use cbootc::deploy::lock::Lock;
use cbootc::deploy::rollback::{self, Rollback};
use cbootc::host::{Host, HostPaths};
use clap::Args;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Boot the rollback deployment for the next boot only.
    #[arg(long)]
    once: bool,
}

pub fn run(a: RollbackArgs) -> Result<()> {
    let paths = HostPaths::from_env();
    let _lock = Lock::acquire(&paths.run)?;
    let mut host = Host::open(paths)?;
    match rollback::rollback(&mut host, a.once)? {
        Rollback::Default(id) => {
            let d = host.record.find(&id).expect("in record");
            println!(
                "{} ({}) is now the default deployment; reboot to use it. Run `cbootc rollback` again to undo.",
                &id[..12],
                d.title
            );
        }
        Rollback::Once(id) => {
            println!(
                "The next boot (only) starts {}; later boots return to the default.",
                &id[..12]
            );
        }
    }
    Ok(())
}
