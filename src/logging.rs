//! Log output: `tracing` to stderr, human-readable on a terminal and JSON otherwise (or as
//! `[log] format` says). `RUST_LOG`, when set, overrides `[log] level`.
//!
//! Lines are handed to a background writer thread, so a request never waits on a write to
//! stderr (a slow pipe or terminal). If that thread falls behind, lines are dropped rather
//! than requests slowed; the returned guard flushes what is queued when the process ends.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the process-wide subscriber; keep the guard until exit. A second call (tests)
/// installs nothing and returns None.
pub fn init(config: &LogConfig) -> Option<WorkerGuard> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse::<EnvFilter>().ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8 * 1024)
        .lossy(true)
        // The writer thread drains every queued line before it flushes: under load, many
        // lines leave in one write(2) instead of one each.
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!json && std::io::stderr().is_terminal());
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    installed.ok().map(|()| guard)
}
