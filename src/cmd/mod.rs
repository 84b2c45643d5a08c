//! Command-line interface: one module per subcommand, each parsing its
//! arguments and calling the library.

mod install;
mod internal;
mod rollback;
mod status;
mod upgrade;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Install and update image-based Linux systems built on composefs.
#[derive(Debug, Parser)]
#[command(name = "cbootc", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the image onto a disk.
    #[command(subcommand)]
    Install(install::InstallCommand),
    /// Show the booted, staged and rollback deployments.
    Status(status::StatusArgs),
    /// Pull the tracked image and stage it for the next boot.
    Upgrade(upgrade::UpgradeArgs),
    /// Track another image: pull it and stage it for the next boot.
    Switch(upgrade::SwitchArgs),
    /// Make the previous deployment the default (again: undo).
    Rollback(rollback::RollbackArgs),
    /// Commands for cbootc's own systemd units.
    #[command(subcommand, hide = true)]
    Internal(internal::InternalCommand),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Install(c) => install::run(c),
        Command::Status(a) => status::run(a),
        Command::Upgrade(a) => upgrade::upgrade(a),
        Command::Switch(a) => upgrade::switch(a),
        Command::Rollback(a) => rollback::run(a),
        Command::Internal(c) => internal::run(c),
    }
}
