//! Log output: one human-readable line per step on stderr.
//!
//! On a terminal lines are coloured and carry no timestamp (the user is
//! watching); under systemd (`$JOURNAL_STREAM` set) they are plain, since the
//! journal adds its own timestamp and priority.

use tracing_subscriber::EnvFilter;

/// Set up the global subscriber. `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Library crates are noisy at debug; keep them at warn unless asked.
    let filter = EnvFilter::try_from_env("CBOOTC_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,cbootc={default}")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("JOURNAL_STREAM").is_none()
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .without_time()
        .with_target(false)
        .init();
}
