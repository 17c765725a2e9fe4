//! The application state shared by the data path and the control path.
//!
//! Everything a request reads lives behind an `ArcSwap` (loaded without a lock) or an
//! atomic, except the menu cache, whose hit path locks only its own worker's shard. Only the control loop stores new values. There are no globals: tests start
//! several apps in one process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::lunch::menu_cache::MenuCache;
use crate::pool::{Budget, PoolSettings};
use crate::telemetry::metrics::Metrics;
use crate::tenancy::migrate::Applied;
use crate::tenancy::provision::ProvisionError;
use crate::tenancy::snapshot::Snapshot;
use crate::tenancy::store::CatalogError;

/// What the control loop can be asked to do, through [`App::control`].
pub enum ControlEvent {
    /// Re-read the catalog now; the reply says how it went (admin API, tests).
    Refresh(Option<oneshot::Sender<Result<RefreshReport, RefreshError>>>),
    /// A background provisioning finished.
    Provisioned {
        database: String,
        result: Result<Applied, ProvisionError>,
    },
}

/// Why a catalog refresh failed; the last good snapshot stays in place. Defined here,
/// beside [`ControlEvent`], because the reply to a refresh request carries it.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("reading the catalog timed out")]
    TimedOut,
    /// The control loop is not running, so nobody answered.
    #[error("control loop stopped")]
    ControlStopped,
}

/// The outcome of one refresh.
#[derive(Debug, Clone)]
pub struct RefreshReport {
    pub generation: u64,
    pub schools: usize,
    pub rejected: Vec<String>,
}

pub struct App {
    /// The running configuration; SIGHUP may replace it with a re-read proxy.toml.
    pub config: ArcSwap<Config>,
    /// The catalog as of the last successful refresh.
    pub snapshot: ArcSwap<Snapshot>,
    /// Token verification for the current `[auth]` settings; replaced on reload, so a new
    /// audience rejects old tokens at once (the verified-token cache goes with it).
    pub auth: ArcSwap<Authenticator>,
    /// How new pools are made (sizes and timeouts may change on reload).
    pub pool_settings: ArcSwap<PoolSettings>,
    /// The cap on connections across all schools.
    pub budget: Arc<Budget>,
    pub metrics: Metrics,
    /// Requests being handled at once, at most `[server] max_in_flight`.
    pub in_flight: Arc<Semaphore>,
    /// True once the first catalog snapshot is loaded.
    pub catalog_loaded: AtomicBool,
    /// True while the control loop runs (control/supervisor.rs); /readyz is 503 while a
    /// failed loop waits to be started again.
    pub control_running: AtomicBool,
    /// True from the moment shutdown begins: /readyz turns 503.
    pub draining: AtomicBool,
    /// Asks the control loop to act (refresh now).
    pub control: mpsc::UnboundedSender<ControlEvent>,
    /// Public-week answers in memory (`[cache]`).
    pub menu_cache: MenuCache,
    /// Schools whose menus were written here, for the other replicas
    /// (`control::menu_notify` sends them on).
    pub menu_writes: mpsc::UnboundedSender<Arc<str>>,
}

/// Why the process is or is not ready for traffic.
pub enum Readiness {
    Ready,
    NotReady(&'static str),
}

impl App {
    pub fn readiness(&self) -> Readiness {
        if self.draining.load(Ordering::Relaxed) {
            Readiness::NotReady("shutting down")
        } else if !self.catalog_loaded.load(Ordering::Relaxed) {
            Readiness::NotReady("catalog not loaded yet")
        } else if !self.control_running.load(Ordering::Relaxed) {
            Readiness::NotReady("control loop not running")
        } else if !self.auth.load().keys_ready() {
            Readiness::NotReady("signing keys not fetched yet")
        } else {
            Readiness::Ready
        }
    }
}
