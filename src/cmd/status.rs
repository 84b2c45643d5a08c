//! `cbootc status`.

use anyhow::Result;
use cbootc::deploy::config::Config;
use cbootc::deploy::state::StateDirs;
use cbootc::deploy::status;
use cbootc::host::{Host, HostError, HostPaths};
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print bootc-compatible JSON (kind BootcHost).
    #[arg(long)]
    json: bool,
}

pub fn run(a: StatusArgs) -> Result<()> {
    let paths = HostPaths::from_env();
    let host = match Host::open(paths.clone()) {
        Ok(h) => h,
        Err(e) if e.downcast_ref::<HostError>().is_some() => {
            // Not a cbootc system: say so, successfully, like `bootc status`
            // on a non-bootc host.
            if a.json {
                let tracked = Config::load(&StateDirs::new(&paths.sysroot).config()).ok();
                let doc = status::host(
                    tracked.as_ref().map(|c| c.image.reference.as_str()),
                    None,
                    None,
                );
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("{e}");
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if a.json {
        let doc = status::host(
            Some(&host.config.image.reference),
            Some(&host.record),
            Some(&host.booted),
        );
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!(
            "{}",
            status::text(&host.config.image.reference, &host.record, &host.booted)
        );
    }
    Ok(())
}
