//! Logging: a `tracing` subscriber, set once by the binary (and by the test harness when asked).
//!
//! Human-readable lines by default, one JSON object per line with `--log-format json` for log
//! shippers. `RUST_LOG` overrides the configured filter. Logs go to stderr so that command output
//! (`routegate config`, `routegate queue stats --json`) stays clean on stdout.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. Calling it twice is harmless: the second call changes nothing.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
