//! Logging: tracing-subscriber to stderr, JSON (machines) or pretty (people), filtered
//! by `RUST_LOG`. Secrets are typed ([`crate::cloudflare::Secret`]) and print as
//! `[redacted]`, so no log line can carry a token or registry password.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    #[default]
    Pretty,
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.with_target(false).compact().try_init(),
    };
    // A subscriber installed earlier (tests) stays in place.
    let _ = result;
}

pub mod metrics;
