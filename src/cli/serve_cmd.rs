//! The `serve` command: start the process (`crate::serve`), wait for SIGTERM or SIGINT,
//! stop gracefully. With `--demo`, demo schools and a token first.

use super::Failure;
use crate::config::Config;
use crate::serve::{start, StartError};

/// The `serve` command: start, wait for SIGTERM or SIGINT, stop gracefully.
pub async fn run(mut config: Config, demo: bool) -> Result<(), Failure> {
    let _log_guard = crate::telemetry::logging::init(&config.log);
    // Before anything else: a SIGTERM that arrives while the demo schools are prepared or
    // the listeners start must stop the process gracefully too, not kill it by the
    // default action.
    let stop_signals = StopSignals::install()?;
    if demo {
        super::demo::enable_dev_tokens(&mut config);
    }
    for warning in &config.warnings {
        tracing::warn!("{}: {warning}", config.source.display());
    }
    let demo_token = if demo {
        Some(super::demo::prepare(&config).await?)
    } else {
        None
    };
    let running = start(config).await?;
    if let Some(token) = demo_token {
        // The printed curl commands must work as soon as they are printed: wait for the
        // first catalog snapshot (it holds the demo schools) before printing them.
        if let Err(err) = running.refresh().await {
            tracing::warn!(error = %err, "the demo catalog is not loaded yet; the commands below may answer 503 for a moment");
        }
        super::demo::print_instructions(&token, running.address);
    }
    stop_signals.wait().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every failure to start is a runtime failure (exit code 1), its text printed as is.
impl From<StartError> for Failure {
    fn from(err: StartError) -> Self {
        Failure::runtime(err.to_string())
    }
}

/// SIGTERM and SIGINT, registered once at startup. Registering replaces the default action
/// (terminate) at once, so no signal is lost between startup and the wait.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|err| Failure::runtime(format!("cannot handle {name}: {err}")))
        };
        Ok(StopSignals {
            terminate: register(SignalKind::terminate(), "SIGTERM")?,
            interrupt: register(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
