//! Per-school connection pools (bb8 + bb8-postgres) and the connection budget shared by
//! all of them.
//!
//! A school's pool is created lazily on its first request and lives in the school's
//! [`TenantPool`], which a catalog refresh carries over unchanged, so a reload never drops
//! an unchanged school's connections. Every connection holds one permit of the
//! [`Budget`] (`[tenants] max_total_connections`); when the budget is spent, one idle
//! connection of another school is closed to make room (`Budget::retire_one_idle`).
//!
//! A request does not check a connection out for itself: it joins one of the school's
//! connections, shared by concurrent requests with their queries pipelined (lanes.rs).
//!
//! Data path: `TenantPool::get` is what a request calls. It must stay lock-free while a
//! pool exists: one `ArcSwapOption` load, then the lanes' `ArcSwap` and atomics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bb8::{ManageConnection, Pool};
use bb8_postgres::PostgresConnectionManager;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config as PgConfig, NoTls, Statement};

mod batching;
mod closing_stream;
mod lanes;
pub mod worker;

use batching::YieldFirst;
use closing_stream::ClosingStream;
pub use lanes::LaneGuard;
use lanes::{LaneLimits, LaneSet};

use crate::config::TenantsConfig;
use crate::pg;

/// The SQL a connection prepares when it opens, in order: the API that runs on the pool
/// supplies it (`PoolSettings::statements`) and names a statement by its index
/// ([`TenantConnection::statement`]). The pool knows the statements only as text.
pub type StatementList = &'static [&'static str];

/// An open connection to a school's database with its prepared statements.
pub struct TenantConnection {
    pub client: Client,
    /// Prepared from [`PoolSettings::statements`], in the same order.
    statements: Vec<Statement>,
    /// Set when a query reports that the connection must not be reused (e.g. a prepared
    /// plan invalidated by a migration, SQLSTATE 0A000).
    broken: AtomicBool,
    /// Where it is connected, for cancel requests (which travel on a new socket).
    target: Arc<PgConfig>,
    connect_timeout: Duration,
    /// The worker thread its connection task runs on (http/workers.rs); `None` off the
    /// workers. Requests on that worker prefer it: no wake-up crosses threads.
    pub home: Option<usize>,
}

impl TenantConnection {
    /// The prepared form of `PoolSettings::statements[index]`.
    ///
    /// # Panics
    /// When `index` is not an index of that list: the caller names its own statements
    /// with constants of that list (a unit test of the API checks them).
    pub fn statement(&self, index: usize) -> &Statement {
        &self.statements[index]
    }

    /// Asks the server to cancel this connection's running query; true once the cancel
    /// request is delivered (the server applies it asynchronously).
    pub async fn cancel_query(&self) -> bool {
        let token = self.client.cancel_token();
        match ClosingStream::connect(&self.target, self.connect_timeout).await {
            Ok(stream) => token.cancel_query_raw(stream, NoTls).await.is_ok(),
            Err(_) => false,
        }
    }

    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// True once the connection must not take another query.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.client.is_closed()
    }
}

/// Why a connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connection budget exhausted ({0} connections across all schools)")]
    BudgetExhausted(u32),
    #[error("cannot connect to database {database}: {message}")]
    Connect {
        database: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot reach database {database}: {message}")]
    Unreachable { database: String, message: String },
    #[error("timed out waiting for a connection to {0}")]
    Timeout(String),
    #[error("the pool of {0} is closed")]
    Closed(String),
}

/// The cap on connections held across all schools, and who can give some back.
pub struct Budget {
    permits: Arc<Semaphore>,
    limit: AtomicU32,
    /// Pools that may be asked to close when the budget is spent (weak: a removed school's
    /// pool must not be kept alive by the budget).
    pools: std::sync::Mutex<Vec<Weak<TenantPool>>>,
}

impl Budget {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
            pools: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connections that can be opened now without closing another one.
    pub fn free(&self) -> u32 {
        self.permits.available_permits() as u32
    }

    pub fn in_use(&self) -> u32 {
        self.limit().saturating_sub(self.free())
    }

    /// Changes the cap (configuration reload). Lowering it takes effect as connections
    /// close: the surplus permits are retired as they come back.
    pub fn set_limit(self: &Arc<Self>, limit: u32) {
        let old = self.limit.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.permits.add_permits((limit - old) as usize);
        } else if limit < old {
            let permits = self.permits.clone();
            tokio::spawn(async move {
                if let Ok(surplus) = permits.acquire_many_owned(old - limit).await {
                    surplus.forget();
                }
            });
        }
    }

    fn register(&self, pool: &Arc<TenantPool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Takes a permit, closing one idle connection of another school when none is free,
    /// and waiting at most `wait` for one. Runs only when a new connection is opened,
    /// never for a request that joins one of its school's open connections.
    async fn acquire(
        &self,
        requester: &str,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, PoolError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        self.retire_one_idle(requester);
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PoolError::BudgetExhausted(self.limit())),
        }
    }

    /// Closes one idle connection of another school to make room: first one of the
    /// school with the most idle connections among those that keep another one, then the
    /// last connection of the least recently used school. Closing one connection rather
    /// than whole pools keeps the other schools' warm connections: with many schools on a
    /// small budget, closing whole idle pools makes far more requests open a connection.
    /// Returns whether one was closed.
    pub fn retire_one_idle(&self, requester: &str) -> bool {
        let mut candidates: Vec<(Arc<TenantPool>, PoolState)> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|p| &*p.database != requester)
                .map(|p| {
                    let state = p.state();
                    (p, state)
                })
                .filter(|(_, state)| state.idle_connections > 0)
                .collect()
        };
        // Schools that keep a connection after this one go first, most idle first; then
        // the rest, least recently used first. Each key is read once (`sort_by_cached_key`):
        // `last_used` changes under our feet, and a sort whose comparisons disagree with
        // each other panics.
        candidates.sort_by_cached_key(|(pool, state)| {
            let keeps_one = state.connections >= 2;
            (
                !keeps_one,
                if keeps_one {
                    u32::MAX - state.idle_connections
                } else {
                    0
                },
                pool.last_used.load(Ordering::Relaxed),
            )
        });
        candidates
            .iter()
            .any(|(pool, _)| pool.retire_idle_connection())
    }
}

/// Opens connections for one school: bb8-postgres underneath, plus the budget permit and
/// the prepared statements.
pub struct TenantManager {
    /// bb8-postgres's manager, for its validity checks on our connections.
    inner: PostgresConnectionManager<NoTls>,
    target: Arc<PgConfig>,
    connect_timeout: Duration,
    database: Arc<str>,
    budget: Arc<Budget>,
    acquire_timeout: Duration,
    statements: StatementList,
}

impl ManageConnection for TenantManager {
    type Connection = TenantConnection;
    type Error = PoolError;

    async fn connect(&self) -> Result<TenantConnection, PoolError> {
        let permit = self
            .budget
            .acquire(&self.database, self.acquire_timeout)
            .await?;
        let connect_error = |source: tokio_postgres::Error| PoolError::Connect {
            database: self.database.to_string(),
            message: pg::error_text(&source),
            source,
        };
        let unreachable = |message: String| PoolError::Unreachable {
            database: self.database.to_string(),
            message,
        };
        // Our own socket (see closing_stream.rs), so that the budget permit is returned
        // only once the server's backend is gone; bb8-postgres's connect would spawn the
        // connection task itself and release it while the backend still exists.
        let stream = ClosingStream::connect(&self.target, self.connect_timeout)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, self.target.connect_raw(stream, NoTls))
                .await
                .map_err(|_| unreachable("startup timed out".into()))?
                .map_err(connect_error)?;
        tokio::spawn(async move {
            // Errors surface on the client's next call.
            let _ = YieldFirst::new(connection).await;
            drop(permit);
        });
        // Prepared pipelined: the Parse messages go out together, so opening a connection
        // costs about one round trip for all of them.
        let statements = futures_util::future::try_join_all(
            self.statements.iter().map(|sql| client.prepare(sql)),
        )
        .await
        .map_err(connect_error)?;
        Ok(TenantConnection {
            client,
            statements,
            broken: AtomicBool::new(false),
            target: self.target.clone(),
            connect_timeout: self.connect_timeout,
            // bb8 runs `connect` in a task spawned from the requesting task, so on the
            // requesting worker's runtime, where `tokio::spawn` above put the connection.
            home: worker::current(),
        })
    }

    async fn is_valid(&self, conn: &mut TenantConnection) -> Result<(), PoolError> {
        self.inner
            .is_valid(&mut conn.client)
            .await
            .map_err(|source| PoolError::Connect {
                database: self.database.to_string(),
                message: pg::error_text(&source),
                source,
            })
    }

    fn has_broken(&self, conn: &mut TenantConnection) -> bool {
        conn.is_broken()
    }
}

/// How pools are made: the tenant server's settings, shared by every school.
#[derive(Clone)]
pub struct PoolSettings {
    pub target: PgConfig,
    pub max_size: u32,
    pub min_idle: u32,
    pub pipeline_depth: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub budget: Arc<Budget>,
    /// Worker threads serving requests (fixed at start): each has its share of a
    /// school's connections.
    pub workers: u32,
    /// What every new connection prepares.
    pub statements: StatementList,
}

impl PoolSettings {
    pub fn new(
        config: &TenantsConfig,
        budget: Arc<Budget>,
        workers: u32,
        statements: StatementList,
    ) -> Self {
        let mut target = config.target.clone();
        target.connect_timeout(config.connect_timeout);
        // A slow query fails on its own instead of holding a connection for the whole
        // request timeout; a forgotten transaction cannot pin a connection either.
        target.options(format!(
            // client_connection_check_interval: a backend whose client went away while its
            // query waits (on a lock, say) ends within a second instead of at the timeout.
            "-c statement_timeout={}ms -c idle_in_transaction_session_timeout={}ms -c client_connection_check_interval=1000ms",
            config.statement_timeout.as_millis(),
            config.statement_timeout.as_millis().max(1000) * 2
        ));
        Self {
            target,
            max_size: config.pool_max_size,
            min_idle: config.pool_min_idle,
            pipeline_depth: config.pipeline_depth,
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
            budget,
            workers,
            statements,
        }
    }
}

impl PoolSettings {
    /// True when pools made with `other` would behave the same.
    ///
    /// The targets are compared with `tokio_postgres::Config`'s `PartialEq`, which covers
    /// every connection setting (user, password, hosts, host addresses, ports, database,
    /// options, application name, timeouts, keepalives, TLS and session attributes). Its
    /// `Debug` text is no substitute: it prints any password as `_`, so a reload that
    /// changes only the password would keep pools that log in with the old one.
    pub fn same_as(&self, other: &PoolSettings) -> bool {
        self.target == other.target
            && self.max_size == other.max_size
            && self.min_idle == other.min_idle
            && self.pipeline_depth == other.pipeline_depth
            && self.acquire_timeout == other.acquire_timeout
            && self.idle_timeout == other.idle_timeout
    }
}

/// A school's pool slot: empty until the first request, emptied when closed to save the
/// budget or when the school leaves the catalog.
pub struct TenantPool {
    pub database: Arc<str>,
    lanes: ArcSwapOption<LaneSet>,
    settings: ArcSwap<PoolSettings>,
    /// Milliseconds since `epoch` of the last request (for least-recently-used eviction).
    last_used: AtomicU64,
    epoch: Instant,
}

/// Connection counts of one pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolState {
    pub connections: u32,
    pub idle_connections: u32,
    pub waiting: u64,
    /// Requests on the school's connections now.
    pub requests: u32,
}

impl TenantPool {
    pub fn new(database: &str, settings: Arc<PoolSettings>) -> Arc<Self> {
        let budget = settings.budget.clone();
        let pool = Arc::new(Self {
            database: Arc::from(database),
            lanes: ArcSwapOption::empty(),
            settings: ArcSwap::new(settings),
            last_used: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        budget.register(&pool);
        pool
    }

    fn build(&self) -> Arc<LaneSet> {
        let settings = self.settings.load();
        let target = pg::with_database(&settings.target, &self.database);
        let manager = TenantManager {
            inner: PostgresConnectionManager::new(target.clone(), NoTls),
            connect_timeout: target
                .get_connect_timeout()
                .copied()
                .unwrap_or(Duration::from_secs(5)),
            target: Arc::new(target),
            database: self.database.clone(),
            budget: settings.budget.clone(),
            acquire_timeout: settings.acquire_timeout,
            statements: settings.statements,
        };
        let pool = Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(settings.min_idle).filter(|n| *n > 0))
            .connection_timeout(settings.acquire_timeout)
            .idle_timeout(Some(settings.idle_timeout))
            // A checkout test costs a round trip per request; broken connections are
            // caught by `has_broken` and by the query error itself.
            .test_on_check_out(false)
            // Fail fast when the database is down instead of retrying until the timeout.
            .retry_connection(false)
            .build_unchecked(manager);
        let limits = LaneLimits {
            max_lanes: settings.max_size,
            depth: settings.pipeline_depth,
            acquire_timeout: settings.acquire_timeout,
            workers: settings.workers,
        };
        LaneSet::new(pool, limits, settings.idle_timeout, settings.budget.clone())
    }

    /// A place on one of the school's connections for one request, waiting at most
    /// `acquire_timeout`.
    pub async fn get(&self) -> Result<LaneGuard, PoolError> {
        self.last_used
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let lanes = match self.lanes.load_full() {
            Some(lanes) => lanes,
            None => {
                // First request (or first after the pool was closed): install one pool;
                // if two requests race, both use whichever was stored first.
                let fresh = self.build();
                let previous = self
                    .lanes
                    .compare_and_swap(&None::<Arc<LaneSet>>, Some(fresh.clone()));
                match &*previous {
                    Some(existing) => existing.clone(),
                    None => fresh,
                }
            }
        };
        lanes.join(&self.database).await
    }

    /// Closes one idle connection (its budget permit goes back). Never waits and never
    /// opens one: false when none was idle.
    fn retire_idle_connection(&self) -> bool {
        match self.lanes.load_full() {
            Some(lanes) => lanes.retire_one_idle(),
            None => false,
        }
    }

    /// Closes every connection of the school that has no request now (after one was found
    /// gone, the others idle as long are likely gone too).
    pub fn retire_idle_connections(&self) {
        if let Some(lanes) = self.lanes.load_full() {
            lanes.retire_idle(Duration::ZERO);
        }
    }

    /// New settings (after a configuration reload): the current pool is closed so the
    /// next request opens one with the new sizes and timeouts.
    pub fn reconfigure(&self, settings: Arc<PoolSettings>) {
        self.settings.store(settings);
        self.close();
    }

    /// Drops the pool: idle connections close now, connections in use close when their
    /// request ends. The next request opens a new pool.
    pub fn close(&self) {
        self.lanes.store(None);
    }

    pub fn state(&self) -> PoolState {
        match &*self.lanes.load() {
            None => PoolState::default(),
            Some(lanes) => {
                let state = lanes.state();
                PoolState {
                    connections: state.connections,
                    idle_connections: state.idle_connections,
                    waiting: u64::from(state.waiting),
                    requests: state.requests,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(tenants: &str) -> PoolSettings {
        let text = format!("[tenants]\n{tenants}\n");
        let config = crate::config::from_str(&text, Path::new("p.toml"), &|_| None).unwrap();
        PoolSettings::new(&config.tenants, Budget::new(8), 1, &[])
    }

    #[test]
    fn settings_differing_only_by_password_are_not_the_same() {
        let url = |password: &str| format!("url = \"postgres://app{password}@db:5432/postgres\"");
        let one = settings(&url(":one"));
        assert!(one.same_as(&settings(&url(":one"))));
        assert!(!one.same_as(&settings(&url(":two"))));
        assert!(!one.same_as(&settings(&url(""))));
        assert!(!one.same_as(&settings(&format!("{}\npool_max_size = 2", url(":one")))));
        assert!(!one.same_as(&settings("url = \"postgres://other:one@db:5432/postgres\"")));
    }
}
