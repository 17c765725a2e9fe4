//! The control path: one loop that owns catalog refreshes, provisioning of new schools and
//! configuration reloads, driven by a closed set of events in one `select!`.
//!
//! Nothing here runs on a request's behalf, and no request ever waits on it: the loop's
//! only way to reach the data path is storing a new snapshot (or configuration) into an
//! `ArcSwap`. A failed refresh keeps the last good snapshot.
//!
//! Two kinds of catalog read keep the snapshot current. A **full refresh** reads every
//! row and replaces the snapshot (it is the truth): at start, on the timer, after the
//! notification connection reconnects, on SIGHUP and on `POST /admin/refresh`. An
//! **incremental update** re-reads only the schools a batch of notifications or a
//! provisioning result names, in one query, and changes only those entries
//! ([`Snapshot::update`]), so onboarding many schools costs O(new schools), not
//! O(catalog × new schools). A lost notification is repaired by the next full refresh.

pub mod listener;
pub mod menu_notify;
pub mod supervisor;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
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
use crate::telemetry::metrics::ReadKind;
use crate::tenancy::migrate::{self, Applied};
use crate::tenancy::provision::{Creation, ProvisionError, Provisioner};
use crate::tenancy::snapshot::{Rejected, Snapshot};
use crate::tenancy::store::{self, CatalogError, SchoolRecord};
use listener::CatalogChanges;

/// Retry state of a school whose provisioning failed.
struct Backoff {
    attempts: u32,
    next_try: Instant,
}

pub struct ControlLoop {
    app: Arc<App>,
    events: mpsc::UnboundedReceiver<ControlEvent>,
    catalog_changed: Arc<CatalogChanges>,
    catalog: Option<Arc<Client>>,
    /// Schools being provisioned right now (never twice at once from this process).
    provisioning: HashSet<String>,
    /// Schools whose database is missing or behind app_sql/, as of the last read of
    /// their rows: what provisioning works through.
    needs_provisioning: BTreeMap<String, Creation>,
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
            catalog_changed: Arc::new(CatalogChanges::default()),
            catalog: None,
            provisioning: HashSet::new(),
            needs_provisioning: BTreeMap::new(),
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
                _ = self.catalog_changed.wait() => { self.catalog_changes().await; }
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

    /// A full refresh: reads every school, replaces the snapshot with what it read, and
    /// starts provisioning what needs it.
    pub async fn refresh(&mut self) -> Result<RefreshReport, RefreshError> {
        let read = self.read_catalog(None).await;
        let records = match read {
            Ok(records) => records,
            Err(err) => {
                self.refresh_failed(&err);
                return Err(err);
            }
        };
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
        self.report_rejected(&rejected);
        self.last_rejected = rejected;
        let next = self.publish(&previous, next, Changed::Everything);
        self.app.metrics.catalog_read(ReadKind::Full);
        self.needs_provisioning.clear();
        self.note_provisioning_needs(&records, &config);
        let needed = &self.needs_provisioning;
        self.failures
            .retain(|database, _| needed.contains_key(database));
        self.start_provisioning(&config);
        Ok(RefreshReport {
            generation: next.generation,
            schools: next.len(),
            rejected: self
                .last_rejected
                .iter()
                .map(|r| format!("{} (id {}): {}", r.database, r.school_id, r.reason))
                .collect(),
        })
    }

    /// Everything the notification listener heard since the last call, read at once.
    async fn catalog_changes(&mut self) {
        let pending = self.catalog_changed.take();
        if pending.everything {
            let _ = self.refresh().await;
        } else if !pending.schools.is_empty() {
            let schools: Vec<String> = pending.schools.into_iter().collect();
            let _ = self.update_schools(&schools).await;
        }
    }

    /// An incremental update: re-reads the rows of `databases` in one query and changes
    /// only their entries. Falls back to a full refresh when the rows conflict with a
    /// school not re-read (its view is stale), or when a school left out for a duplicate
    /// slug may now be admitted.
    async fn update_schools(&mut self, databases: &[String]) -> Result<(), RefreshError> {
        if self.last_rejected.iter().any(|r| r.duplicate_slug) {
            return self.refresh().await.map(drop);
        }
        let records = match self.read_catalog(Some(databases)).await {
            Ok(records) => records,
            Err(err) => {
                self.refresh_failed(&err);
                return Err(err);
            }
        };
        let config = self.app.config.load_full();
        let previous = self.app.snapshot.load_full();
        let settings = self.app.pool_settings.load_full();
        let updated = previous.update(
            databases,
            &records,
            &settings,
            config.catalog.database(),
            &|school| self.app.metrics.school_counter(school),
        );
        let (next, rejected) = match updated {
            Ok(updated) => updated,
            Err(conflict) => {
                tracing::info!(school = %conflict.database, slug = %conflict.slug, "slug held by another school in the snapshot; reading the whole catalog");
                return self.refresh().await.map(drop);
            }
        };
        self.report_rejected(&rejected);
        self.last_rejected
            .retain(|r| !databases.contains(&r.database));
        self.last_rejected.extend(rejected);
        self.publish(&previous, next, Changed::Schools(databases));
        self.app.metrics.catalog_read(ReadKind::Incremental);
        for database in databases {
            self.needs_provisioning.remove(database);
        }
        self.note_provisioning_needs(&records, &config);
        self.start_provisioning(&config);
        Ok(())
    }

    /// Logs each skipped row when it first appears, not at every refresh.
    fn report_rejected(&self, rejected: &[Rejected]) {
        for r in rejected.iter().filter(|r| !self.last_rejected.contains(r)) {
            tracing::error!(school_id = r.school_id, school = %r.database, reason = %r.reason, "catalog row skipped");
        }
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

    /// Stores `next` for the data path, drains the pools of `changed` schools no longer
    /// served and updates the catalog metrics.
    fn publish(&self, previous: &Snapshot, next: Snapshot, changed: Changed<'_>) -> Arc<Snapshot> {
        // Schools that left (or stopped being served) drain: requests in flight finish on
        // the pool they hold, idle connections close now.
        let mut gone = Vec::new();
        let mut drain = |old: &Arc<crate::tenancy::snapshot::Tenant>| {
            let now = next.by_database(&old.database);
            if now.is_none() {
                gone.push(old.database.clone());
            }
            let still_served = now.is_some_and(|t| t.status == SchoolStatus::Active);
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
        };
        match changed {
            Changed::Everything => previous.tenants().for_each(&mut drain),
            Changed::Schools(databases) => databases
                .iter()
                .filter_map(|database| previous.by_database(database))
                .for_each(&mut drain),
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
            self.app
                .metrics
                .set_schools(status, next.count(status) as u64);
        }
        if !gone.is_empty() {
            self.app
                .metrics
                .retain_schools(|name| next.by_database(name).is_some());
        }
        next
    }

    /// Reads every school (`None`) or the named ones.
    async fn read_catalog(
        &mut self,
        databases: Option<&[String]>,
    ) -> Result<Vec<SchoolRecord>, RefreshError> {
        let client = self.catalog().await?;
        let read = async {
            match databases {
                None => store::list_schools(&client).await,
                Some(databases) => store::schools_named(&client, databases).await,
            }
        };
        let records = match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(result) => result?,
            Err(_) => return Err(RefreshError::TimedOut),
        };
        if self.last_catalog_error.take().is_some() {
            tracing::info!("catalog reachable again");
        }
        Ok(records)
    }

    /// Notes which of `records` need provisioning: new, or behind on app_sql/. A suspended
    /// school's database is migrated if it exists, never created.
    fn note_provisioning_needs(&mut self, records: &[SchoolRecord], config: &Config) {
        let latest = migrate::app_migrations().latest_version();
        for record in records {
            let creation = match record.status {
                Ok(SchoolStatus::Provisioning) => Creation::Allowed,
                _ if record.db_version >= latest => continue,
                Ok(SchoolStatus::Active) => Creation::Allowed,
                // Unknown statuses too: nothing is created for a row this build cannot read.
                Ok(SchoolStatus::Suspended) | Err(_) => Creation::ExistingOnly,
            };
            if names::validate_database_name(&record.database).is_err()
                || record.database == config.catalog.database()
            {
                continue;
            }
            self.needs_provisioning
                .insert(record.database.clone(), creation);
        }
    }

    /// Provisions, in the background, schools that need it, up to the concurrency limit.
    fn start_provisioning(&mut self, config: &Config) {
        if !config.tenants.auto_provision {
            return;
        }
        let now = Instant::now();
        let mut started = 0;
        for (database, creation) in &self.needs_provisioning {
            if self.provisioning.len() >= config.tenants.provision_concurrency {
                // The rest start as running ones finish.
                break;
            }
            if self.provisioning.contains(database)
                || self
                    .failures
                    .get(database)
                    .is_some_and(|b| b.next_try > now)
            {
                continue;
            }
            self.provisioning.insert(database.clone());
            started += 1;
            let provisioner = Provisioner::from_config(config);
            let (database, creation) = (database.clone(), *creation);
            let events = self.app.control.clone();
            self.tasks.spawn(async move {
                let result = provisioner.provision_with(&database, creation).await;
                let _ = events.send(ControlEvent::Provisioned { database, result });
            });
        }
        if started > 0 {
            tracing::info!(started, "provisioning schools in the background");
        }
    }

    /// A provisioning result: recorded in the catalog, then that school alone re-read.
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
        let _ = self.update_schools(std::slice::from_ref(&database)).await;
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
                // The new authenticator gets its own refresher (the old one's ends when the
                // old authenticator is dropped): without it the key set would never be
                // fetched again after a reload.
                let stop = self.stop.clone();
                if next.auth.jwks_url.is_some() {
                    // Fetched in the background; until then the new settings verify with
                    // no keys, so keep the old authenticator until the fetch succeeds.
                    let app = self.app.clone();
                    self.tasks.spawn(async move {
                        match auth.refresh_keys().await {
                            Ok(()) => {
                                auth.spawn_refresher(stop);
                                app.auth.store(auth);
                            }
                            Err(err) => tracing::error!(error = %err, "reloaded [auth] not applied: fetching the key set failed"),
                        }
                    });
                } else {
                    auth.spawn_refresher(stop);
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

/// Which schools a new snapshot may have changed.
#[derive(Clone, Copy)]
enum Changed<'a> {
    Everything,
    Schools(&'a [String]),
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
