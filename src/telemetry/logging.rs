//! Log output: `tracing` to stderr, human-readable on a terminal and JSON otherwise (or as
//! `[log] format` says). `RUST_LOG`, when set, overrides `[log] level`.
//!
//! Lines are appended to a shared buffer that a background thread writes out every
//! [`FLUSH_EVERY`] (and a writer flushes at once when it passes [`FLUSH_AT_BYTES`]), so
//! one access line per request costs a memcpy, not a write(2) and not a thread wake-up
//! (a channel to a writer thread, as tracing-appender does, costs a futex wake-up per
//! line; BENCHMARKS.md, Findings). The returned guard writes what is left when the
//! process ends.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written by the thread that filled it.
pub const FLUSH_AT_BYTES: usize = 64 * 1024;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    /// Held while writing to stderr, so batches leave in the order they were taken.
    output: Mutex<()>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn flush(&self) {
        let _order = self.output.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            // Nowhere to report a failed log write; the lines are dropped.
            let _ = std::io::stderr().write_all(&batch);
        }
    }
}

/// The writer handed to tracing: appends to the shared buffer.
#[derive(Clone)]
struct BatchWriter(Arc<Shared>);

impl Write for BatchWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buffer = self.0.buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.extend_from_slice(bytes);
            buffer.len() >= FLUSH_AT_BYTES
        };
        if full {
            self.0.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Writes the remaining lines and stops the flusher when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.flush();
    }
}

/// Installs the process-wide subscriber; keep the guard until exit. A second call (tests)
/// installs nothing and returns None.
pub fn init(config: &LogConfig) -> Option<LogGuard> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        // Non-ASCII can panic tracing-subscriber's parser (see config::validate::log).
        .filter(|text| text.is_ascii())
        .and_then(|text| text.parse::<EnvFilter>().ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Vec::with_capacity(FLUSH_AT_BYTES)),
        output: Mutex::new(()),
        stop: Mutex::new(false),
        wake: Condvar::new(),
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchWriter(shared.clone()))
        .with_ansi(!json && std::io::stderr().is_terminal());
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    installed.ok()?;
    let flusher = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
                let (stop, _) = shared
                    .wake
                    .wait_timeout(stop, FLUSH_EVERY)
                    .unwrap_or_else(|e| e.into_inner());
                let done = *stop;
                drop(stop);
                shared.flush();
                if done {
                    return;
                }
            })
            .ok()
    };
    Some(LogGuard { shared, flusher })
}
