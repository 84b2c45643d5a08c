//! The `cbootc` command.

#![deny(unsafe_code)]

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    logging::init(cli.verbose);
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context first, then its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
