//! Logging: a `tracing` subscriber, set once by the binary (and by the test harness when asked).
//!
//! Human-readable lines by default, one JSON object per line with `--log-format json` for log
//! shippers. `RUST_LOG` overrides the configured filter. Logs go to stderr so that command output
//! (`routegate config`, `routegate queue stats --json`) stays clean on stdout. Colour codes are
//! written only when stderr is a terminal, never into a file or the journal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. Calling it twice is harmless: the second call changes nothing.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The HTTP framework's own request lines repeat `http::observe`'s at the wrong levels.
        .add_directive(
            crate::http::QUIET_LOG_TARGET
                .parse()
                .expect("a valid directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _already_set = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
