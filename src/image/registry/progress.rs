//! Download progress: one bar per layer when stderr is a terminal; when it
//! is not (the journal, a CI log), plain `tracing` lines at every quarter
//! of a layer and at least every few seconds, so a slow pull still shows
//! it is moving without flooding the log.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::util::size::format_size;

/// How often a log line is written for a layer that is still moving.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The display for one pull.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars if stderr is a terminal, log lines otherwise.
    pub fn new() -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// Log a line without tearing the bars.
    pub fn info(&self, msg: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| tracing::info!("{msg}")),
            None => tracing::info!("{msg}"),
        }
    }

    /// Start showing a layer of `size` bytes.
    pub fn layer(&self, digest: &str, size: u64) -> LayerProgress {
        let name = short(digest);
        let bar = self.multi.as_ref().map(|m| {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let b = m.add(ProgressBar::new(size).with_style(style));
            b.set_prefix(name.clone());
            b
        });
        if bar.is_none() {
            tracing::info!("fetching layer {name} ({})", format_size(size));
        }
        LayerProgress {
            bar,
            name,
            size,
            fetched: AtomicU64::new(0),
            log: Mutex::new(LogState {
                next_quarter: 1,
                last: Instant::now(),
            }),
        }
    }
}

struct LogState {
    next_quarter: u64,
    last: Instant,
}

/// One layer's bar or log lines.
pub struct LayerProgress {
    bar: Option<ProgressBar>,
    name: String,
    size: u64,
    fetched: AtomicU64,
    log: Mutex<LogState>,
}

impl LayerProgress {
    /// `n` more bytes arrived.
    pub fn inc(&self, n: u64) {
        let fetched = self.fetched.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        let size = self.size.max(1);
        let quarter_reached = fetched * 4 >= log.next_quarter * size;
        if quarter_reached || log.last.elapsed() >= LOG_EVERY {
            let pct = fetched * 100 / size;
            tracing::info!("layer {}: {pct}% of {}", self.name, format_size(self.size));
            while log.next_quarter <= 4 && fetched * 4 >= log.next_quarter * size {
                log.next_quarter += 1;
            }
            log.last = Instant::now();
        }
    }

    /// The layer is done (verified and imported) or failed.
    pub fn finish(&self, ok: bool) {
        if let Some(b) = &self.bar {
            if ok {
                b.finish();
            } else {
                b.abandon();
            }
        }
    }
}

/// `sha256:0123456789ab` — enough to tell layers apart on screen.
pub fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_digest() {
        assert_eq!(
            short("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(short("sha256:01"), "sha256:01");
    }
}
