//! The process's Prometheus metrics: counters the data and control paths bump, and the
//! text exposition `/metrics` on the admin listener serves.
//!
//! This module owns every metric name, label set and bucket layout, and the rule that keeps
//! label cardinality bounded: routes and JWT rejection reasons are the variants of
//! [`RouteName`] and [`AuthError`] (a request no route matched is counted under `other`),
//! statuses a fixed list (any other by its class), and per-school series exist only for the
//! top `metrics_top_schools` schools by traffic, the rest summed under `school="other"`.
//! The request path is lock-free: one array slot per route and status, atomics only; the
//! one lock guards the school registry, taken when a tenant is created, forgotten or at
//! render time. It must not read pools or the catalog itself (the caller passes what render
//! needs), start tasks, or hold a lock while a request is counted.
//!
//! No external crate: the exposition format is a few lines of text, and fixed arrays of
//! atomics are both simpler and cheaper on the hot path than a general label registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::auth::AuthError;
use crate::domain::status::SchoolStatus;
use crate::lunch::router::RouteName;
use crate::tenancy::snapshot::SchoolCounter;

/// One slot per [`RouteName`] (`name as usize`), then `route="other"`: a request that
/// matched no route.
const ROUTE_SLOTS: usize = RouteName::ALL.len() + 1;
const UNMATCHED_ROUTE_SLOT: usize = RouteName::ALL.len();

/// Statuses with their own label; others are labelled by class (`2xx`, ..., `5xx`).
const STATUSES: [u16; 25] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 422, 429,
    431, 500, 501, 502, 503, 504,
];
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
const STATUS_SLOTS: usize = STATUSES.len() + STATUS_CLASSES.len();

/// One slot per [`AuthError`] (`error as usize`), labelled with its `reason()`.
const JWT_SLOTS: usize = AuthError::ALL.len();

// Slots are the enums' discriminants: both `ALL` arrays must list every variant in
// declaration order, or this fails to compile.
const _: () = {
    let mut i = 0;
    while i < RouteName::ALL.len() {
        assert!(RouteName::ALL[i] as usize == i);
        i += 1;
    }
    let mut i = 0;
    while i < AuthError::ALL.len() {
        assert!(AuthError::ALL[i] as usize == i);
        i += 1;
    }
};

/// Upper bounds of `http_request_duration_seconds`, as written in `le` and in nanoseconds.
const BUCKETS: [(&str, u64); 14] = [
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

const SCHOOL_STATUSES: [SchoolStatus; 3] = [
    SchoolStatus::Provisioning,
    SchoolStatus::Active,
    SchoolStatus::Suspended,
];

/// Workers with a `worker_connections_total` series of their own; more fold into the last.
pub const WORKER_SLOTS: usize = 64;

/// `catalog_loaded_nanos` before the first snapshot.
const NEVER: u64 = u64::MAX;

/// How the control loop read the catalog: every row, or only the rows of the schools that
/// notifications or a provisioning result named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Full = 0,
    Incremental = 1,
}

impl ReadKind {
    pub const ALL: [ReadKind; 2] = [ReadKind::Full, ReadKind::Incremental];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// All metrics of one process. Shared as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    /// `http_requests_total`, indexed `[route][status slot]`.
    requests: [[AtomicU64; STATUS_SLOTS]; ROUTE_SLOTS],
    /// `http_request_duration_seconds`, one histogram per route.
    durations: [Histogram; ROUTE_SLOTS],
    jwt_rejections: [AtomicU64; JWT_SLOTS],
    /// `worker_connections_total`: client connections accepted by each worker thread, to
    /// see how evenly the kernel spreads them (http/workers.rs).
    worker_connections: [AtomicU64; WORKER_SLOTS],
    token_cache_hits: AtomicU64,
    token_cache_misses: AtomicU64,
    catalog_generation: AtomicU64,
    /// When the current snapshot was loaded, as nanoseconds since `created` (an `Instant`
    /// cannot live in an atomic), or [`NEVER`].
    catalog_loaded_nanos: AtomicU64,
    catalog_refresh_ok: AtomicU64,
    catalog_refresh_error: AtomicU64,
    /// `catalog_reads_total`, indexed by [`ReadKind`].
    catalog_reads: [AtomicU64; 2],
    provision_ok: AtomicU64,
    provision_error: AtomicU64,
    /// `control_loop_restarts_total`: control loops that ended unexpectedly and were
    /// started again (control/supervisor.rs).
    control_loop_restarts: AtomicU64,
    /// `read_retries_total`: reads run again on a fresh connection after theirs was found
    /// gone (edge/service.rs).
    read_retries: AtomicU64,
    schools: [AtomicU64; SCHOOL_STATUSES.len()],
    created: Instant,
    /// Per-school request counters by school name.
    school_counters: Mutex<HashMap<String, Arc<SchoolCounter>>>,
    /// Requests of schools forgotten by [`Metrics::retain_schools`], kept in `other` so
    /// that series never goes backwards when a school is removed.
    forgotten_school_requests: AtomicU64,
    /// How many schools keep their own `school` label.
    top_schools: usize,
}

/// One school's pool, as sampled by the caller at render time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauges {
    pub connections: u64,
    pub idle: u64,
    pub waiting: u64,
    /// Requests on the school's connections now (more than connections when pipelined).
    pub requests: u64,
}

/// What the pools look like now, for one render. Schools outside the top-N label set are
/// summed under `school="other"`, as for requests.
#[derive(Debug, Clone, Default)]
pub struct PoolReport<'a> {
    pub schools: Vec<(&'a str, PoolGauges)>,
    pub budget_in_use: u64,
    pub budget_limit: u64,
}

#[derive(Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is above the largest bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        // Capped, so one absurd duration cannot wrap the sum: about 11.6 days.
        const MAX_OBSERVED_NANOS: u64 = 1_000_000_000_000_000;
        let nanos = u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .min(MAX_OBSERVED_NANOS);
        let slot = BUCKETS
            .iter()
            .position(|&(_, bound)| nanos <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Empty metrics; `top_schools` is `admin.metrics_top_schools`.
    pub fn new(top_schools: usize) -> Metrics {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; STATUS_SLOTS] }; ROUTE_SLOTS],
            durations: Default::default(),
            jwt_rejections: [const { AtomicU64::new(0) }; JWT_SLOTS],
            worker_connections: [const { AtomicU64::new(0) }; WORKER_SLOTS],
            token_cache_hits: AtomicU64::new(0),
            token_cache_misses: AtomicU64::new(0),
            catalog_generation: AtomicU64::new(0),
            catalog_loaded_nanos: AtomicU64::new(NEVER),
            catalog_refresh_ok: AtomicU64::new(0),
            catalog_refresh_error: AtomicU64::new(0),
            catalog_reads: Default::default(),
            provision_ok: AtomicU64::new(0),
            provision_error: AtomicU64::new(0),
            control_loop_restarts: AtomicU64::new(0),
            read_retries: AtomicU64::new(0),
            schools: [const { AtomicU64::new(0) }; SCHOOL_STATUSES.len()],
            created: Instant::now(),
            school_counters: Mutex::new(HashMap::new()),
            forgotten_school_requests: AtomicU64::new(0),
            top_schools,
        }
    }

    /// Counts one answered request: `route` is `Route::label()`, `None` when no route
    /// matched; `elapsed` is the time from the request's arrival to its response head.
    pub fn record_request(&self, route: Option<RouteName>, status: StatusCode, elapsed: Duration) {
        let route = route.map_or(UNMATCHED_ROUTE_SLOT, |route| route as usize);
        self.requests[route][status_slot(status)].fetch_add(1, Ordering::Relaxed);
        self.durations[route].observe(elapsed);
    }

    /// Counts a client connection accepted by `worker` (`None`: off the workers).
    pub fn connection_accepted(&self, worker: Option<usize>) {
        // Connections off the workers (the admin listener) are not a worker's.
        let Some(worker) = worker else { return };
        let slot = worker.min(WORKER_SLOTS - 1);
        self.worker_connections[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused token, by why it was refused.
    pub fn jwt_rejected(&self, error: AuthError) {
        self.jwt_rejections[error as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_cache_hit(&self) {
        self.token_cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_cache_miss(&self) {
        self.token_cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a newly stored catalog snapshot and when it was loaded.
    pub fn catalog_snapshot(&self, generation: u64, loaded_at: Instant) {
        let since = loaded_at.saturating_duration_since(self.created).as_nanos();
        // NEVER - 1 at most: a process does not run for 584 years.
        let since = u64::try_from(since).unwrap_or(NEVER - 1).min(NEVER - 1);
        self.catalog_generation.store(generation, Ordering::Relaxed);
        self.catalog_loaded_nanos.store(since, Ordering::Relaxed);
    }

    pub fn catalog_refresh(&self, ok: bool) {
        let counter = if ok {
            &self.catalog_refresh_ok
        } else {
            &self.catalog_refresh_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A successful catalog read that changed the snapshot, by kind.
    pub fn catalog_read(&self, kind: ReadKind) {
        self.catalog_reads[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn provision(&self, ok: bool) {
        let counter = if ok {
            &self.provision_ok
        } else {
            &self.provision_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn control_loop_restarted(&self) {
        self.control_loop_restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read_retried(&self) {
        self.read_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets how many schools of the catalog are in `status`.
    pub fn set_schools(&self, status: SchoolStatus, count: u64) {
        self.schools[school_status_slot(status)].store(count, Ordering::Relaxed);
    }

    /// The request counter of `school`, created on first use. Called once when a tenant is
    /// created; the same school gets the same counter back, so a rebuilt tenant keeps its
    /// count.
    pub fn school_counter(&self, school: &str) -> Arc<SchoolCounter> {
        let mut counters = self.lock_school_counters();
        if let Some(counter) = counters.get(school) {
            return Arc::clone(counter);
        }
        let counter = Arc::new(SchoolCounter::default());
        counters.insert(school.to_owned(), Arc::clone(&counter));
        counter
    }

    /// Forgets the schools for which `keep` is false (removed from the catalog). Their
    /// requests so far stay in `other`. A forgotten counter still held by a tenant keeps
    /// counting, unseen: drop the tenant too.
    pub fn retain_schools(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut counters = self.lock_school_counters();
        counters.retain(|name, counter| {
            let kept = keep(name);
            if !kept {
                self.forgotten_school_requests
                    .fetch_add(counter.get(), Ordering::Relaxed);
            }
            kept
        });
    }

    fn lock_school_counters(&self) -> MutexGuard<'_, HashMap<String, Arc<SchoolCounter>>> {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        self.school_counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("top_schools", &self.top_schools)
            .finish_non_exhaustive()
    }
}

fn status_slot(status: StatusCode) -> usize {
    let code = status.as_u16();
    match STATUSES.iter().position(|&s| s == code) {
        Some(slot) => slot,
        None => {
            let class = match code {
                100..=599 => usize::from(code / 100 - 1),
                _ => STATUS_CLASSES.len() - 1,
            };
            STATUSES.len() + class
        }
    }
}

fn school_status_slot(status: SchoolStatus) -> usize {
    match status {
        SchoolStatus::Provisioning => 0,
        SchoolStatus::Active => 1,
        SchoolStatus::Suspended => 2,
    }
}

mod render;
#[cfg(test)]
mod tests;
