//! `tenant-edge serve`: assembles the app, starts the listeners and the control loop, and
//! stops them in a fixed order.
//!
//! [`start`] is what the binary and the in-process tests both call; it returns once the
//! listeners are bound (the catalog may still be loading: /readyz says when it is).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::auth::{AuthSetupError, Authenticator};
use crate::config::Config;
use crate::control::{menu_notify, supervisor, ControlLoop};
use crate::edge::server;
use crate::edge::service::Site;
use crate::edge::static_files::StaticFiles;
use crate::edge::workers::{self, Workers};
use crate::lunch::menu_cache::MenuCache;
use crate::lunch::queries;
use crate::pool::{Budget, PoolSettings};
use crate::state::{App, ControlEvent, RefreshError, RefreshReport};
use crate::telemetry::metrics::Metrics;
use crate::tenancy::snapshot::Snapshot;

/// How long a shutdown waits for the closed pools' connections to end.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A started server.
pub struct Running {
    pub app: Arc<App>,
    pub address: SocketAddr,
    pub admin_address: Option<SocketAddr>,
    stop_accepting: CancellationToken,
    stop_background: CancellationToken,
    workers: Workers,
    background: Vec<JoinHandle<()>>,
}

/// Why the server could not start: each is something the operator must fix. The texts
/// name what failed (the file and key, or the address).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The JWKS file or URL of `[auth]`.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error("{}: key `server.static_dir`: {}: {source}", .file.display(), .dir.display())]
    StaticDir {
        file: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound (the text names the address).
    #[error("{0}")]
    Listen(String),
    #[error(transparent)]
    LocalAddress(#[from] std::io::Error),
    /// A worker thread's runtime could not be started.
    #[error("{0}")]
    Workers(String),
}

/// Builds the app and starts everything. Fails only for what the operator must fix
/// (an address in use, an unreadable static_dir or JWKS file).
pub async fn start(config: Config) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let auth = Arc::new(Authenticator::new(&config.auth)?);
    let static_files = static_files(&config)?;
    let worker_count = workers::count(config.server.worker_threads);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (menu_writes, menu_writes_rx) = mpsc::unbounded_channel();
    let app = build_app(&config, auth.clone(), worker_count, control_tx, menu_writes);

    let listeners =
        workers::bind(config.server.listen, worker_count).map_err(StartError::Listen)?;
    let address = listeners[0].local_addr()?;
    let admin_listener = match config.admin.listen {
        Some(addr) => Some(server::bind(addr).await.map_err(StartError::Listen)?),
        None => None,
    };
    let admin_address = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

    let stop_accepting = CancellationToken::new();
    let stop_background = CancellationToken::new();
    let mut background =
        spawn_background(&app, &auth, control_rx, admin_listener, &stop_background);
    if config.cache.enabled {
        background.push(tokio::spawn(menu_notify::run(
            app.clone(),
            menu_writes_rx,
            stop_background.clone(),
        )));
    }
    let site = Arc::new(Site {
        app: app.clone(),
        static_files,
    });
    let workers = Workers::start(
        listeners,
        site,
        stop_accepting.clone(),
        Arc::new(Semaphore::new(config.server.max_connections)),
    )
    .map_err(StartError::Workers)?;
    tracing::info!(%address, admin = ?admin_address, "tenant-edge listening");
    Ok(Running {
        app,
        address,
        admin_address,
        stop_accepting,
        stop_background,
        workers,
        background,
    })
}

/// The static files of `[server] static_dir`, when one is set.
fn static_files(config: &Config) -> Result<Option<StaticFiles>, StartError> {
    let Some(dir) = &config.server.static_dir else {
        return Ok(None);
    };
    StaticFiles::new(dir.clone())
        .map(Some)
        .map_err(|source| StartError::StaticDir {
            file: config.source.clone(),
            dir: dir.clone(),
            source,
        })
}

/// The shared state, with an empty snapshot: the control loop loads the catalog.
fn build_app(
    config: &Arc<Config>,
    auth: Arc<Authenticator>,
    worker_count: usize,
    control: mpsc::UnboundedSender<ControlEvent>,
    menu_writes: mpsc::UnboundedSender<Arc<str>>,
) -> Arc<App> {
    let budget = Budget::new(config.tenants.max_total_connections);
    Arc::new(App {
        snapshot: ArcSwap::from_pointee(Snapshot::empty()),
        auth: ArcSwap::new(auth),
        pool_settings: ArcSwap::from_pointee(PoolSettings::new(
            &config.tenants,
            budget.clone(),
            worker_count as u32,
            &queries::STATEMENTS,
        )),
        budget,
        metrics: Metrics::new(config.admin.metrics_top_schools),
        in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
        catalog_loaded: AtomicBool::new(false),
        control_running: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        control,
        menu_cache: MenuCache::new(&config.cache, worker_count),
        menu_writes,
        config: ArcSwap::new(config.clone()),
    })
}

/// The control path's tasks: the JWKS refresher (the first fetch too), the control loop,
/// the admin listener. They stop when `stop` is cancelled.
fn spawn_background(
    app: &Arc<App>,
    auth: &Arc<Authenticator>,
    control: mpsc::UnboundedReceiver<ControlEvent>,
    admin_listener: Option<TcpListener>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut background = Vec::new();
    // With jwks_url, the refresher makes the first fetch at once and retries it with
    // backoff; /readyz stays 503 until it succeeds.
    background.push(auth.spawn_refresher(stop.clone()));
    let loop_app = app.clone();
    background.push(tokio::spawn(supervisor::supervise(
        app.clone(),
        control,
        stop.clone(),
        supervisor::Backoff::DEFAULT,
        move |events, stop| ControlLoop::new(loop_app.clone(), events, stop).run(),
    )));
    if let Some(listener) = admin_listener {
        background.push(tokio::spawn(admin::serve(
            listener,
            app.clone(),
            stop.clone(),
        )));
    }
    background
}

impl Running {
    /// Asks the control loop to re-read the catalog now and waits for the result.
    pub async fn refresh(&self) -> Result<RefreshReport, RefreshError> {
        let (reply, result) = oneshot::channel();
        self.app
            .control
            .send(ControlEvent::Refresh(Some(reply)))
            .map_err(|_| RefreshError::ControlStopped)?;
        result.await.map_err(|_| RefreshError::ControlStopped)?
    }

    /// Graceful shutdown, in this order:
    /// 1. /readyz turns 503, so the load balancer stops sending new requests (the
    ///    listener keeps accepting for `drain_delay`, so its health check can see that);
    /// 2. the listener stops accepting; in-flight requests finish (up to
    ///    `shutdown_grace`) and idle keep-alive connections close;
    /// 3. background tasks stop (control loop, listener of catalog changes, JWKS refresh,
    ///    admin listener);
    /// 4. the pools close with the last snapshot, and their connections end (they run
    ///    on the workers' threads, which end last).
    pub async fn shutdown(mut self) {
        self.app.draining.store(true, Ordering::Relaxed);
        // Keep accepting for a moment while /readyz says 503, so the load balancer stops
        // sending before connections are refused.
        let delay = self.app.config.load().server.drain_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.stop_accepting.cancel();
        self.workers.drained().await;
        self.stop_background.cancel();
        for task in self.background.drain(..) {
            let _ = task.await;
        }
        for tenant in self.app.snapshot.load().tenants() {
            tenant.pool.close();
        }
        self.app.snapshot.store(Arc::new(Snapshot::empty()));
        // Each closed connection sends Terminate from its task and ends once the server
        // has closed its side (the budget permit goes with it).
        let closed_by = tokio::time::Instant::now() + CLOSE_WAIT;
        while self.app.budget.in_use() > 0 && tokio::time::Instant::now() < closed_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.workers.join().await;
    }
}
