//! The control path: one loop that owns catalog refreshes, provisioning of new schools and
//! configuration reloads, driven by a closed set of events in one `select!`.
//!
//! Nothing here runs on a request's behalf, and no request ever waits on it: the loop's
//! only way to reach the data path is storing a new snapshot (or configuration) into an
//! `ArcSwap`. A failed refresh keeps the last good snapshot.

pub mod listener;
pub mod menu_notify;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::{self, Config, ConfigSource};
use crate::domain::names;
use crate::domain::status::SchoolStatus;
use crate::lunch::menu_cache::Origin;
use crate::pool::PoolSettings;
use crate::state::{App, ControlEvent, RefreshError, RefreshReport};
use crate::tenancy::migrate::{self, Applied};
use crate::tenancy::provision::{ProvisionError, Provisioner};
use crate::tenancy::snapshot::{Rejected, Snapshot};
use crate::tenancy::store::{self, CatalogError, SchoolRecord};

/// Retry state of a school whose provisioning failed.
struct Backoff {
    attempts: u32,
    next_try: Instant,
}

pub struct ControlLoop {
    app: Arc<App>,
    events: mpsc::UnboundedReceiver<ControlEvent>,
    catalog_changed: Arc<Notify>,
    catalog: Option<Arc<Client>>,
    /// Schools being provisioned right now (never twice at once from this process).
    provisioning: HashSet<String>,
    failures: HashMap<String, Backoff>,
    tasks: TaskTracker,
    stop: CancellationToken,
    last_catalog_error: Option<String>,
    last_rejected: Vec<Rejected>,
}

impl ControlLoop {
    pub fn new(
        app: Arc<App>,
        events: mpsc::UnboundedReceiver<ControlEvent>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            app,
            events,
            catalog_changed: Arc::new(Notify::new()),
            catalog: None,
            provisioning: HashSet::new(),
            failures: HashMap::new(),
            tasks: TaskTracker::new(),
            stop,
            last_catalog_error: None,
            last_rejected: Vec::new(),
        }
    }

    /// Runs until `stop` is cancelled, then waits for its background tasks.
    pub async fn run(mut self) {
        let config = self.app.config.load_full();
        if config.catalog.notifications {
            self.tasks.spawn(listener::run(
                config.catalog.target.clone(),
                config.catalog.connect_timeout,
                self.catalog_changed.clone(),
                self.stop.clone(),
            ));
        }
        let mut sighup = signal_stream();
        let mut timer = tokio::time::interval(config.catalog.refresh_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Until the first snapshot is loaded, retry quickly rather than at the interval.
        let mut startup_retry = tokio::time::interval(Duration::from_millis(500));

        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = timer.tick() => { let _ = self.refresh().await; }
                _ = startup_retry.tick(), if !self.app.catalog_loaded.load(Ordering::Relaxed) => {
                    let _ = self.refresh().await;
                }
                _ = self.catalog_changed.notified() => { let _ = self.refresh().await; }
                Some(()) = recv_signal(&mut sighup) => {
                    tracing::info!("SIGHUP: reloading configuration and catalog");
                    self.reload_config();
                    let _ = self.refresh().await;
                }
                Some(event) = self.events.recv() => match event {
                    ControlEvent::Refresh(reply) => {
                        let result = self.refresh().await;
                        if let Some(reply) = reply {
                            let _ = reply.send(result);
                        }
                    }
                    ControlEvent::Provisioned { database, result } => {
                        self.provisioned(database, result).await;
                    }
                },
            }
            // A changed refresh interval (SIGHUP) takes effect here.
            let interval = self.app.config.load().catalog.refresh_interval;
            if timer.period() != interval {
                timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The catalog connection, (re)opened on demand. The first time, the catalog database
    /// is created and migrated if needed.
    async fn catalog(&mut self) -> Result<Arc<Client>, CatalogError> {
        if let Some(client) = &self.catalog {
            if !client.is_closed() {
                return Ok(client.clone());
            }
        }
        let config = self.app.config.load_full();
        let mut client = store::connect_or_create(&config.catalog).await?;
        let (target, timeout) = (&config.catalog.target, config.catalog.connect_timeout);
        store::migrate_catalog(&mut client, target, timeout).await?;
        let client = Arc::new(client);
        self.catalog = Some(client.clone());
        Ok(client)
    }

    /// Reads the schools, swaps in the next snapshot, and starts provisioning what needs it.
    pub async fn refresh(&mut self) -> Result<RefreshReport, RefreshError> {
        let records = match self.read_schools().await {
            Ok(records) => records,
            Err(err) => {
                self.refresh_failed(&err);
                return Err(err);
            }
        };
        if self.last_catalog_error.take().is_some() {
            tracing::info!("catalog reachable again");
        }
        let config = self.app.config.load_full();
        let previous = self.app.snapshot.load_full();
        let settings = self.app.pool_settings.load_full();
        let (next, rejected) = Snapshot::build(
            &records,
            &previous,
            &settings,
            config.catalog.database(),
            &|school| self.app.metrics.school_counter(school),
        );
        // Each skipped row is reported when it first appears, not at every refresh.
        for r in rejected.iter().filter(|r| !self.last_rejected.contains(r)) {
            tracing::error!(school_id = r.school_id, school = %r.database, reason = %r.reason, "catalog row skipped");
        }
        self.last_rejected = rejected.clone();
        let next = self.publish(&previous, next);
        if config.tenants.auto_provision {
            self.start_provisioning(&records, &config);
        }
        Ok(RefreshReport {
            generation: next.generation,
            schools: next.len(),
            rejected: rejected
                .iter()
                .map(|r| format!("{} (id {}): {}", r.database, r.school_id, r.reason))
                .collect(),
        })
    }

    /// A failed refresh: the snapshot stays, the connection is reopened next time, and the
    /// error is logged once per distinct text (then at debug while it repeats).
    fn refresh_failed(&mut self, err: &RefreshError) {
        self.catalog = None;
        self.app.metrics.catalog_refresh(false);
        let age = self.app.snapshot.load().loaded_at.elapsed().as_secs();
        let text = err.to_string();
        if self.last_catalog_error.as_deref() != Some(text.as_str()) {
            tracing::error!(error = %text, snapshot_age_s = age, "catalog refresh failed; serving from the last snapshot");
            self.last_catalog_error = Some(text);
        } else {
            tracing::debug!(error = %text, snapshot_age_s = age, "catalog refresh failed again");
        }
    }

    /// Stores `next` for the data path, drains the pools of schools no longer served and
    /// updates the catalog metrics.
    fn publish(&self, previous: &Snapshot, next: Snapshot) -> Arc<Snapshot> {
        // Schools that left (or stopped being served) drain: requests in flight finish on
        // the pool they hold, idle connections close now.
        for old in previous.tenants() {
            let still_served = next
                .by_database(&old.database)
                .is_some_and(|t| t.status == SchoolStatus::Active);
            if !still_served && old.pool.state().connections > 0 {
                old.pool.close();
            }
            // Suspended, removed, moved or renamed: its cached menus go.
            let same_slug = next
                .by_database(&old.database)
                .is_some_and(|t| t.slug == old.slug);
            if old.status == SchoolStatus::Active && !(still_served && same_slug) {
                self.app
                    .menu_cache
                    .drop_school(&old.database, Origin::Local);
            }
        }
        let next = Arc::new(next);
        self.app.snapshot.store(next.clone());
        self.app.catalog_loaded.store(true, Ordering::Relaxed);
        self.app.metrics.catalog_refresh(true);
        self.app
            .metrics
            .catalog_snapshot(next.generation, next.loaded_at);
        for status in [
            SchoolStatus::Provisioning,
            SchoolStatus::Active,
            SchoolStatus::Suspended,
        ] {
            let count = next.tenants().filter(|t| t.status == status).count() as u64;
            self.app.metrics.set_schools(status, count);
        }
        self.app
            .metrics
            .retain_schools(|name| next.by_database(name).is_some());
        next
    }

    async fn read_schools(&mut self) -> Result<Vec<SchoolRecord>, RefreshError> {
        let client = self.catalog().await?;
        let read = tokio::time::timeout(Duration::from_secs(10), store::list_schools(&client));
        match read.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RefreshError::TimedOut),
        }
    }

    /// Provisions, in the background, every school that is new or behind on app_sql/.
    fn start_provisioning(&mut self, records: &[SchoolRecord], config: &Config) {
        let latest = migrate::app_migrations().latest_version();
        let now = Instant::now();
        let mut started = 0;
        for record in records {
            let needs =
                record.status == Ok(SchoolStatus::Provisioning) || record.db_version < latest;
            if !needs
                || self.provisioning.contains(&record.database)
                || names::validate_database_name(&record.database).is_err()
                || record.database == config.catalog.database()
                || self
                    .failures
                    .get(&record.database)
                    .is_some_and(|b| b.next_try > now)
            {
                continue;
            }
            if self.provisioning.len() >= config.tenants.provision_concurrency {
                // The rest start as running ones finish (each completion refreshes).
                break;
            }
            self.provisioning.insert(record.database.clone());
            started += 1;
            let provisioner = Provisioner::from_config(config);
            let database = record.database.clone();
            let events = self.app.control.clone();
            self.tasks.spawn(async move {
                let result = provisioner.provision(&database).await;
                let _ = events.send(ControlEvent::Provisioned { database, result });
            });
        }
        if started > 0 {
            tracing::info!(started, "provisioning schools in the background");
        }
    }

    async fn provisioned(&mut self, database: String, result: Result<Applied, ProvisionError>) {
        self.provisioning.remove(&database);
        self.app.metrics.provision(result.is_ok());
        let recorded = match self.catalog().await {
            Err(err) => Err(err),
            Ok(client) => match &result {
                Ok(applied) => {
                    self.failures.remove(&database);
                    tracing::info!(school = %database, applied = applied.count, version = applied.version, "school provisioned");
                    store::record_provisioned(&client, &database, applied.version).await
                }
                Err(reason) => {
                    let backoff = self.failures.entry(database.clone()).or_insert(Backoff {
                        attempts: 0,
                        next_try: Instant::now(),
                    });
                    backoff.attempts += 1;
                    let delay = Duration::from_secs(1 << backoff.attempts.min(8))
                        .min(Duration::from_secs(300));
                    backoff.next_try = Instant::now() + delay;
                    tracing::error!(school = %database, attempts = backoff.attempts, retry_in_s = delay.as_secs(), error = %reason, "provisioning failed");
                    store::record_failure(&client, &database, &reason.to_string()).await
                }
            },
        };
        if let Err(err) = recorded {
            tracing::warn!(school = %database, error = %err, "recording the provisioning result in the catalog failed");
        }
        let _ = self.refresh().await;
    }

    /// SIGHUP: re-reads proxy.toml. A valid file applies what can change live; an invalid
    /// one is reported and the running configuration stays.
    fn reload_config(&mut self) {
        let current = self.app.config.load_full();
        let source = ConfigSource {
            path: current.source.clone(),
            explicit: true,
        };
        let next = match config::load(&source, &|key| std::env::var(key).ok()) {
            Ok(next) => next,
            Err(err) => {
                tracing::error!(error = %err, "configuration reload failed; keeping the running configuration");
                return;
            }
        };
        if next.server.listen != current.server.listen || next.admin.listen != current.admin.listen
        {
            tracing::warn!(
                "a changed listen address needs a restart; keeping the current listeners"
            );
        }
        if next.server.worker_threads != current.server.worker_threads {
            tracing::warn!("a changed server.worker_threads needs a restart");
        }
        match Authenticator::new(&next.auth) {
            Ok(auth) => {
                let auth = Arc::new(auth);
                if next.auth.jwks_url.is_some() {
                    // Fetched in the background; until then the new settings verify with
                    // no keys, so keep the old authenticator until the fetch succeeds.
                    let app = self.app.clone();
                    self.tasks.spawn(async move {
                        match auth.refresh_keys().await {
                            Ok(()) => app.auth.store(auth),
                            Err(err) => tracing::error!(error = %err, "reloaded [auth] not applied: fetching the key set failed"),
                        }
                    });
                } else {
                    self.app.auth.store(auth);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "reloaded [auth] not applied");
            }
        }
        // The worker threads were fixed at start; a reload does not change them.
        let current = self.app.pool_settings.load();
        let settings = Arc::new(PoolSettings::new(
            &next.tenants,
            self.app.budget.clone(),
            current.workers,
            current.statements,
        ));
        let pools_changed = !settings.same_as(&self.app.pool_settings.load());
        self.app
            .budget
            .set_limit(next.tenants.max_total_connections);
        self.app.pool_settings.store(settings.clone());
        if pools_changed {
            // Pools pick up the new sizes and timeouts as they are re-created.
            for tenant in self.app.snapshot.load().tenants() {
                tenant.pool.reconfigure(settings.clone());
            }
        }
        for warning in &next.warnings {
            tracing::warn!("{}: {warning}", next.source.display());
        }
        self.app.config.store(Arc::new(next));
        tracing::info!("configuration reloaded");
    }
}

/// SIGHUP, or `None` when the handler cannot be installed (then a reload needs a restart).
type SignalStream = Option<tokio::signal::unix::Signal>;

fn signal_stream() -> SignalStream {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

async fn recv_signal(stream: &mut SignalStream) -> Option<()> {
    match stream {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
