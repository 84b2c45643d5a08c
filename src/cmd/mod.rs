//! Command-line interface: one module per subcommand, each parsing its
//! arguments and calling the library.

mod install;

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
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Install(c) => install::run(c),
    }
}
