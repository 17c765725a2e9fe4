//! A school's open connections, shared by its concurrent requests ("lanes"), so that
//! PostgreSQL sees their queries pipelined.
//!
//! A request does not take a connection for itself: it joins one of the school's lanes,
//! and tokio-postgres writes the queries of every request on a lane together and reads
//! their results together. A school then needs far fewer connections for the same
//! traffic (BENCHMARKS.md, Findings, "Shared, pipelined connections"), which is what the budget shared by all
//! schools needs; and PostgreSQL serves pipelined queries with fewer wake-ups, since one
//! read and one write carry many queries. It is safe because
//! every query the API runs is a single autocommit statement: requests that share a
//! connection share no transaction and no session state.
//!
//! Placement (see [`LaneSet::decide`]): an idle lane of the requesting worker thread
//! first; then a new lane while fewer than `pool_max_size` are open, the worker has fewer
//! than its share of them, and the budget has a connection to spare (so PostgreSQL's
//! parallelism is used before queries are stacked on one backend); then the worker's
//! least loaded lane that is making progress; then another worker's lane. A lane carries
//! at most `pipeline_depth` requests, and when every lane is full a request waits for
//! room, as it would for a free connection in a plain pool.
//!
//! Lanes are checked out of the school's bb8 pool, which still opens, validates and
//! closes the connections (and charges each one to the budget); a lane goes back when it
//! breaks, when it has been idle for `idle_timeout`, or when the budget needs its
//! connection for another school. A retired lane takes no new request and its connection
//! closes when the requests already on it finish.
//!
//! Data path: [`LaneSet::join`] is one `ArcSwap` load and a few atomics unless a lane has
//! to be opened or every lane is full.

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bb8::{Pool, PooledConnection, RunError};
use tokio::sync::Notify;

use super::{Budget, PoolError, TenantConnection, TenantManager};

/// Set in [`Lane::load`] once the lane takes no more requests.
const RETIRED: u32 = 1 << 31;

/// A busy lane is stalled (its head query waits on a lock, say, or its backend gets no
/// CPU) when it has finished no request for [`LAGGING_MS`] while another lane of the
/// school finished one since, or for [`STUCK_MS`] in any case. New requests are stacked
/// behind a stalled lane only when no other lane has room.
///
/// Why relative: the API's queries take well under a millisecond, but on a machine whose
/// cores are shared (with PostgreSQL, say) a thread is routinely descheduled for 10-30
/// ms, and then *every* lane it serves looks idle for that long: an absolute 10 ms would
/// send the requests of a descheduled worker to the other worker's lanes, each a
/// cross-thread wake-up (BENCHMARKS.md, Findings, "Stalled = lagging"). An absolute 100 ms alone
/// would let a lane whose backend gets no CPU take new requests for 100 ms. Lagging
/// behind the school's other lanes is what marks the one lane that is slow.
const LAGGING_MS: u64 = 10;
/// See [`LAGGING_MS`]: no lane of the school makes progress (a single connection whose
/// query is stuck); still far beyond any healthy query.
const STUCK_MS: u64 = 100;

/// One connection and the requests on it now.
pub struct Lane {
    connection: PooledConnection<'static, TenantManager>,
    /// Requests on this lane, plus the [`RETIRED`] bit.
    load: AtomicU32,
    /// When a request last left it, or joined it while it was idle (milliseconds since
    /// the set's epoch).
    progress_ms: AtomicU64,
}

impl Lane {
    fn requests(&self) -> u32 {
        self.load.load(Ordering::SeqCst) & !RETIRED
    }

    fn is_broken(&self) -> bool {
        self.connection.is_broken()
    }

    /// `latest_ms`: the school's latest progress on any lane.
    fn is_stalled(&self, now_ms: u64, latest_ms: u64) -> bool {
        is_stalled(
            self.requests(),
            self.progress_ms.load(Ordering::Relaxed),
            now_ms,
            latest_ms,
        )
    }
}

/// The stall rule of [`LAGGING_MS`] for a lane carrying `requests` whose last progress was
/// at `progress_ms`, when the school's latest progress on any lane is `latest_ms`.
fn is_stalled(requests: u32, progress_ms: u64, now_ms: u64, latest_ms: u64) -> bool {
    let idle_for = now_ms.saturating_sub(progress_ms);
    requests > 0
        && (idle_for >= STUCK_MS
            || (idle_for >= LAGGING_MS && latest_ms.saturating_sub(progress_ms) >= LAGGING_MS))
}

/// How a school's lanes are sized.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    /// Lanes (connections) at most: `pool_max_size`.
    pub max_lanes: u32,
    /// Requests one lane carries at once: `pipeline_depth`.
    pub depth: u32,
    /// How long a request waits for a lane with room.
    pub acquire_timeout: Duration,
    /// Worker threads serving requests (http/workers.rs): each opens at most its share
    /// of `max_lanes` while another worker's lanes have room, so that every worker has
    /// lanes of its own instead of crossing threads to the first one's.
    pub workers: u32,
}

impl LaneLimits {
    fn share(&self) -> u32 {
        self.max_lanes.div_ceil(self.workers.max(1))
    }
}

/// The lanes of one school, over the school's bb8 pool.
pub struct LaneSet {
    pool: Pool<TenantManager>,
    lanes: ArcSwap<Vec<Arc<Lane>>>,
    limits: LaneLimits,
    /// Lanes being opened right now (they count against `max_lanes`).
    opening: AtomicU32,
    /// The same, per worker (index: the worker's, modulo the length).
    opening_by_worker: Box<[AtomicU32]>,
    /// Requests waiting for room; a leaving request wakes them only when there are any.
    waiting: AtomicU32,
    room: Notify,
    /// The connection budget across schools: while it is spent, a school with a lane that
    /// has room pipelines on it rather than take another school's connection.
    budget: Arc<Budget>,
    /// The latest `progress_ms` of any lane.
    progress_ms: AtomicU64,
    epoch: Instant,
}

/// A claim to open one lane; given back on drop, also when the opening request is
/// cancelled, and then the waiters look again (to join the new lane, or to open one
/// themselves after a failure).
struct Opening<'a> {
    set: &'a LaneSet,
    worker: usize,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.set.opening.fetch_sub(1, Ordering::SeqCst);
        self.set.opening_by_worker[self.worker].fetch_sub(1, Ordering::SeqCst);
        if self.set.waiting.load(Ordering::SeqCst) > 0 {
            self.set.room.notify_waiters();
        }
    }
}

/// A request counted among the waiters for as long as it waits, cancelled or not.
struct Waiting<'a> {
    set: &'a LaneSet,
}

impl<'a> Waiting<'a> {
    fn register(set: &'a LaneSet) -> Self {
        set.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting { set }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.set.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where [`LaneSet::decide`] sends a request.
enum Placement {
    /// Join this lane; `true` when it was chosen for having no request.
    Join(Arc<Lane>, bool),
    Open(Funding),
    Wait,
}

/// Where the connection of a new lane comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Funding {
    /// A budget connection that is free beyond those this school is opening already.
    FreeBudget,
    /// Closing an idle connection of another school: nothing of this school has room and
    /// nothing is opening (one such opening at a time).
    Eviction,
}

/// What [`LaneSet::decide`] reads of one lane.
#[derive(Debug, Clone, Copy)]
struct LaneView {
    /// Requests on it, plus the [`RETIRED`] bit.
    load: u32,
    /// Its connection's task runs on the requesting worker thread.
    local: bool,
    /// Busy with room and stalled ([`is_stalled`]); false for any other lane.
    stalled: bool,
}

/// One pass over a school's lanes: the candidates of each kind (indices into the lanes).
#[derive(Debug, Default)]
struct Scan {
    /// The first idle lane of this worker (the scan stops there).
    idle: Option<usize>,
    /// The first idle lane of another worker.
    idle_elsewhere: Option<usize>,
    /// The least loaded (index, load) lanes with room: of this worker making progress, of
    /// another worker making progress, and stalled.
    healthy: Option<(usize, u32)>,
    healthy_elsewhere: Option<(usize, u32)>,
    stalled: Option<(usize, u32)>,
    /// Lanes of this worker that are not retired.
    local_lanes: u32,
}

impl Scan {
    fn of(views: impl Iterator<Item = LaneView>, depth: u32) -> Scan {
        let mut scan = Scan::default();
        for (index, view) in views.enumerate() {
            let load = view.load;
            if load & RETIRED != 0 {
                continue;
            }
            scan.local_lanes += u32::from(view.local);
            if load >= depth {
                continue;
            }
            if load == 0 {
                if view.local {
                    scan.idle = Some(index);
                    break;
                }
                scan.idle_elsewhere.get_or_insert(index);
                continue;
            }
            let slot = if view.stalled {
                &mut scan.stalled
            } else if view.local {
                &mut scan.healthy
            } else {
                &mut scan.healthy_elsewhere
            };
            if slot.is_none_or(|(_, best)| load < best) {
                *slot = Some((index, load));
            }
        }
        scan
    }
}

/// The school-wide counts [`place`] weighs besides the lanes.
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// Lanes in the set (retired ones still there included).
    lanes: u32,
    /// Lanes being opened, by any worker and by this one.
    opening: u32,
    opening_here: u32,
    /// Free connections of the budget across schools.
    budget_free: u32,
    /// The request runs on a worker thread (else every lane is local).
    on_worker: bool,
}

/// [`Placement`] by lane index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Join(usize, bool),
    Open(Funding),
    Wait,
}

/// Steps 2 to 7 of [`LaneSet::decide`] (step 1, an idle lane of this worker, is
/// `scan.idle`).
fn place(scan: &Scan, limits: &LaneLimits, counts: Counts) -> Choice {
    if let Some(index) = scan.idle {
        return Choice::Join(index, true);
    }
    let healthy_room =
        scan.healthy.is_some() || scan.idle_elsewhere.is_some() || scan.healthy_elsewhere.is_some();
    let any_room = healthy_room || scan.stalled.is_some();
    let opening = counts.opening;
    // Beyond its share only when no lane anywhere has room and makes progress.
    let within_share = !counts.on_worker
        || scan.local_lanes + counts.opening_here < limits.share()
        || !healthy_room;
    if counts.lanes + opening < limits.max_lanes && within_share {
        if opening < counts.budget_free {
            return Choice::Open(Funding::FreeBudget);
        }
        if opening == 0 && !any_room {
            return Choice::Open(Funding::Eviction);
        }
    }
    if let Some((index, _)) = scan.healthy {
        return Choice::Join(index, false);
    }
    if let Some(index) = scan.idle_elsewhere {
        return Choice::Join(index, true);
    }
    if let Some((index, _)) = scan.healthy_elsewhere {
        return Choice::Join(index, false);
    }
    if opening > 0 {
        return Choice::Wait;
    }
    match scan.stalled {
        Some((index, _)) => Choice::Join(index, false),
        None => Choice::Wait,
    }
}

/// A request's place on a lane; leaving it (drop) frees the place.
pub struct LaneGuard {
    lane: Arc<Lane>,
    set: Arc<LaneSet>,
}

impl Deref for LaneGuard {
    type Target = TenantConnection;

    fn deref(&self) -> &TenantConnection {
        &self.lane.connection
    }
}

impl LaneGuard {
    /// For a request that gives up on its query (timeout): the lane takes no new request
    /// and its connection closes once the requests on it finish. True when this request
    /// is the only one on it, i.e. when cancelling the backend's running query cannot hit
    /// another request's query.
    pub fn retire_alone(&self) -> bool {
        self.lane.connection.mark_broken();
        let before = self.lane.load.fetch_or(RETIRED, Ordering::SeqCst);
        self.set.remove(&self.lane);
        before & !RETIRED == 1
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        let before = self.lane.load.fetch_sub(1, Ordering::SeqCst);
        let now = self.set.now_ms();
        self.lane.progress_ms.store(now, Ordering::Relaxed);
        // A plain store: two workers racing here differ by a millisecond at most.
        self.set.progress_ms.store(now, Ordering::Relaxed);
        let retiring = before & RETIRED == 0 && self.lane.is_broken();
        if retiring {
            self.lane.load.fetch_or(RETIRED, Ordering::SeqCst);
            self.set.remove(&self.lane);
        }
        if self.set.waiting.load(Ordering::SeqCst) > 0 {
            if retiring {
                // The school lost a lane: every waiter decides again (one may open anew).
                self.set.room.notify_waiters();
            } else {
                // One place came free: one waiter takes it. Waking all of them would make
                // each finished request cost a wake-up and a placement per waiter, across
                // threads. A woken waiter that is cancelled before it looks passes the
                // wake-up on (tokio's Notified does that), and one that finds the place
                // taken waits again for the next.
                self.set.room.notify_one();
            }
        }
    }
}

/// Lane and connection counts of one school.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaneState {
    /// Open connections (lanes, retired lanes still finishing, idle ones in bb8).
    pub connections: u32,
    /// Lanes without a request, plus connections idle in bb8.
    pub idle_connections: u32,
    /// Requests on lanes now.
    pub requests: u32,
    /// Requests waiting for room on a lane.
    pub waiting: u32,
}

impl LaneSet {
    /// A set over `pool`, with a background sweep that retires lanes idle for `idle_for`.
    pub fn new(
        pool: Pool<TenantManager>,
        limits: LaneLimits,
        idle_for: Duration,
        budget: Arc<Budget>,
    ) -> Arc<Self> {
        let set = Arc::new(Self {
            pool,
            lanes: ArcSwap::from_pointee(Vec::new()),
            limits,
            opening: AtomicU32::new(0),
            opening_by_worker: (0..limits.workers.max(1))
                .map(|_| AtomicU32::new(0))
                .collect(),
            waiting: AtomicU32::new(0),
            room: Notify::new(),
            budget,
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        spawn_idle_sweep(Arc::downgrade(&set), idle_for);
        set
    }

    /// This thread's index into `opening_by_worker`.
    fn worker_slot(&self) -> usize {
        super::worker::current().unwrap_or(0) % self.opening_by_worker.len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A place on a lane for one request, waiting at most `acquire_timeout` when there is
    /// none (see [`LaneSet::decide`] for which one).
    pub async fn join(self: &Arc<Self>, database: &str) -> Result<LaneGuard, PoolError> {
        let give_up = tokio::time::Instant::now() + self.limits.acquire_timeout;
        loop {
            match self.decide() {
                Placement::Join(lane, idle) => {
                    if let Some(guard) = self.enter(lane, idle) {
                        return Ok(guard);
                    }
                    // Filled up or retired since the look: decide again.
                    continue;
                }
                Placement::Open(funding) => {
                    if let Some(claim) = self.reserve_opening(funding) {
                        return self.open_lane(claim, database).await;
                    }
                    continue;
                }
                Placement::Wait => {}
            }
            let waiting = Waiting::register(self);
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Decided again after registering, so room made in between is not missed.
            let timed_out = match self.decide() {
                Placement::Wait => tokio::time::timeout_at(give_up, room).await.is_err(),
                _ => false,
            };
            drop(waiting);
            if timed_out {
                return Err(PoolError::Timeout(database.to_string()));
            }
        }
    }

    /// Where the next request goes, in order of preference:
    /// 1. a lane of this worker without a request (a lane is "of this worker" when its
    ///    connection's task runs on the requesting thread, http/workers.rs: no wake-up
    ///    crosses threads);
    /// 2. a new lane, while fewer than `max_lanes` are open or opening, this worker has
    ///    fewer than its share of them (or no lane anywhere has room and makes progress),
    ///    and the budget has a free connection for it beyond those this school is opening
    ///    already; or, with
    ///    no lane with room and none opening, even with the budget spent (the connection
    ///    then comes from closing an idle one of another school). Once the budget is
    ///    spent a school pipelines on its lanes, even slow ones, instead of closing
    ///    another school's connection, which would make that school reconnect; and a
    ///    burst never opens more lanes than there are free connections, which would leave
    ///    the surplus waiting for connections that cannot come;
    /// 3. the least loaded lane of this worker with room that is making progress;
    /// 4. another worker's lane: an idle one, else the least loaded making progress;
    /// 5. nowhere yet if a lane is being opened: it will have room and no stuck query;
    /// 6. the least loaded stalled lane with room (nothing better can come);
    /// 7. nowhere: every lane is full, wait.
    fn decide(&self) -> Placement {
        let lanes = self.lanes.load();
        let now = self.now_ms();
        let depth = self.limits.depth;
        let here = super::worker::current();
        let latest = self.progress_ms.load(Ordering::Relaxed);
        let views = lanes.iter().map(|lane| {
            let load = lane.load.load(Ordering::SeqCst);
            if lane.is_broken() {
                // Its connection is gone (backend terminated, socket closed): no request
                // goes there. An idle one leaves the set now, a busy one when its last
                // request leaves; either way the scan sees it as retired.
                self.retire_if_idle(lane);
                return LaneView {
                    load: load | RETIRED,
                    local: false,
                    stalled: false,
                };
            }
            let busy_with_room = load & RETIRED == 0 && load > 0 && load < depth;
            LaneView {
                load,
                // Off the workers (tests, the control path) every lane counts as local.
                local: here.is_none() || lane.connection.home == here,
                stalled: busy_with_room && lane.is_stalled(now, latest),
            }
        });
        let scan = Scan::of(views, depth);
        if let Some(index) = scan.idle {
            return Placement::Join(lanes[index].clone(), true);
        }
        let counts = Counts {
            lanes: lanes.len() as u32,
            opening: self.opening.load(Ordering::SeqCst),
            opening_here: self.opening_by_worker[self.worker_slot()].load(Ordering::SeqCst),
            budget_free: self.budget.free(),
            on_worker: here.is_some(),
        };
        match place(&scan, &self.limits, counts) {
            Choice::Join(index, idle) => Placement::Join(lanes[index].clone(), idle),
            Choice::Open(funding) => Placement::Open(funding),
            Choice::Wait => Placement::Wait,
        }
    }

    /// Takes a place on `lane` unless it filled up or retired since it was chosen, or,
    /// when it was chosen for being idle, another request took it first (in a burst, the
    /// others then open lanes of their own instead of piling onto one).
    fn enter(self: &Arc<Self>, lane: Arc<Lane>, idle: bool) -> Option<LaneGuard> {
        let before = lane.load.fetch_add(1, Ordering::SeqCst);
        if before & RETIRED != 0 || before >= self.limits.depth || (idle && before != 0) {
            lane.load.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if before == 0 {
            lane.progress_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        Some(LaneGuard {
            lane,
            set: self.clone(),
        })
    }

    /// Claims the right to open one lane, if lanes open and opening stay below the cap and
    /// `funding` still holds. The claim is a guard: a request cancelled while it opens
    /// (its deadline passed, its client went away) gives the claim back, or the school
    /// would count a lane that never comes and stop opening any.
    ///
    /// `funding` is checked again here, against the `opening` count the compare-and-swap
    /// takes, not only in `decide`: the workers decide at the same time on two threads,
    /// and two of them that both saw the last free connection (or both saw nothing
    /// opening) would both open, and the second would wait for a connection that cannot
    /// come and answer 503. (The 24-request burst on a budget of 3 in
    /// tests/e2e/pipelining.rs got such a 503 in about 1 of 30 runs before this check; 0
    /// of 40 runs after it.)
    fn reserve_opening(&self, funding: Funding) -> Option<Opening<'_>> {
        let mut opening = self.opening.load(Ordering::SeqCst);
        loop {
            // Read after `opening`: a lane that finished opening in between is counted in
            // both (too cautious) rather than in neither (one lane too many).
            let open = self.lanes.load().len() as u32;
            if open + opening >= self.limits.max_lanes {
                return None;
            }
            let funded = match funding {
                Funding::FreeBudget => opening < self.budget.free(),
                Funding::Eviction => opening == 0,
            };
            if !funded {
                return None;
            }
            match self.opening.compare_exchange(
                opening,
                opening + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    let worker = self.worker_slot();
                    self.opening_by_worker[worker].fetch_add(1, Ordering::SeqCst);
                    return Some(Opening { set: self, worker });
                }
                Err(now) => opening = now,
            }
        }
    }

    async fn open_lane(
        self: &Arc<Self>,
        claim: Opening<'_>,
        database: &str,
    ) -> Result<LaneGuard, PoolError> {
        // A connection idle in bb8 may have been closed meanwhile (its backend
        // terminated): it is dropped (bb8 discards a broken one) and another one taken, up
        // to as many times as the pool holds connections.
        let mut discarded = 0;
        let checked_out = loop {
            match self.pool.get_owned().await {
                Ok(connection) if connection.is_broken() && discarded < self.limits.max_lanes => {
                    // Dropped before the next checkout, which may need its place.
                    connection.mark_broken();
                    drop(connection);
                    discarded += 1;
                }
                result => break result,
            }
        };
        let result = match checked_out {
            Ok(connection) => {
                let lane = Arc::new(Lane {
                    connection,
                    load: AtomicU32::new(1),
                    progress_ms: AtomicU64::new(self.now_ms()),
                });
                self.lanes.rcu(|lanes| {
                    let mut next = Vec::with_capacity(lanes.len() + 1);
                    next.extend(lanes.iter().cloned());
                    next.push(lane.clone());
                    next
                });
                Ok(LaneGuard {
                    lane,
                    set: self.clone(),
                })
            }
            Err(RunError::User(err)) => Err(err),
            Err(RunError::TimedOut) => Err(PoolError::Timeout(database.to_string())),
        };
        // Pushed before the claim is given back, so `reserve_opening` never counts the lane
        // in neither.
        drop(claim);
        result
    }

    /// Takes a retired lane out of the set (its connection closes when its last request
    /// leaves).
    fn remove(&self, lane: &Arc<Lane>) {
        if !self.lanes.load().iter().any(|l| Arc::ptr_eq(l, lane)) {
            return;
        }
        self.lanes.rcu(|lanes| {
            lanes
                .iter()
                .filter(|l| !Arc::ptr_eq(l, lane))
                .cloned()
                .collect::<Vec<_>>()
        });
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Retires one lane if it has no request; the connection closes now.
    fn retire_if_idle(&self, lane: &Arc<Lane>) -> bool {
        if lane
            .load
            .compare_exchange(0, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        // Closed rather than returned to bb8 as an idle connection: it was idle already.
        lane.connection.mark_broken();
        self.remove(lane);
        true
    }

    /// Retires the lanes idle for at least `idle_for`; returns how many.
    pub fn retire_idle(&self, idle_for: Duration) -> usize {
        let now = self.now_ms();
        let idle_ms = idle_for.as_millis() as u64;
        let lanes = self.lanes.load_full();
        lanes
            .iter()
            .filter(|lane| {
                lane.requests() == 0
                    && now.saturating_sub(lane.progress_ms.load(Ordering::Relaxed)) >= idle_ms
            })
            .filter(|lane| self.retire_if_idle(lane))
            .count()
    }

    /// Closes one idle connection (for the budget): an idle one in bb8 first, else the
    /// lane idle the longest. False when every connection is in use.
    pub fn retire_one_idle(&self) -> bool {
        if self.pool.state().idle_connections > 0 {
            use futures_util::FutureExt;
            if let Some(Ok(connection)) = self.pool.get().now_or_never() {
                // A broken connection is dropped by bb8 instead of returning to the pool.
                connection.mark_broken();
                return true;
            }
        }
        let lanes = self.lanes.load_full();
        let mut idle: Vec<&Arc<Lane>> = lanes.iter().filter(|l| l.requests() == 0).collect();
        // Keys read once: requests move `progress_ms` while we sort (see Budget).
        idle.sort_by_cached_key(|l| l.progress_ms.load(Ordering::Relaxed));
        idle.into_iter().any(|lane| self.retire_if_idle(lane))
    }

    pub fn state(&self) -> LaneState {
        let pool = self.pool.state();
        let lanes = self.lanes.load();
        let requests: u32 = lanes.iter().map(|l| l.requests()).sum();
        let idle_lanes = lanes.iter().filter(|l| l.requests() == 0).count() as u32;
        LaneState {
            connections: pool.connections,
            idle_connections: pool.idle_connections + idle_lanes,
            requests,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// Retires idle lanes in the background for as long as the set exists (it holds only a
/// weak reference, so a closed pool's sweep ends by itself).
fn spawn_idle_sweep(set: Weak<LaneSet>, idle_for: Duration) {
    let period = (idle_for / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(set) = set.upgrade() else { break };
            set.retire_idle(idle_for);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LaneLimits = LaneLimits {
        max_lanes: 4,
        depth: 8,
        acquire_timeout: Duration::from_secs(1),
        workers: 2,
    };

    fn lane(load: u32, local: bool, stalled: bool) -> LaneView {
        LaneView {
            load,
            local,
            stalled,
        }
    }

    /// Counts of a request on a worker thread with `lanes` open, nothing opening and
    /// `budget_free` free connections.
    fn counts(lanes: usize, budget_free: u32) -> Counts {
        Counts {
            lanes: lanes as u32,
            opening: 0,
            opening_here: 0,
            budget_free,
            on_worker: true,
        }
    }

    fn choose(lanes: &[LaneView], counts: Counts) -> Choice {
        place(
            &Scan::of(lanes.iter().copied(), LIMITS.depth),
            &LIMITS,
            counts,
        )
    }

    #[test]
    fn an_idle_lane_of_this_worker_comes_first() {
        let lanes = [
            lane(3, true, false),
            lane(0, false, false),
            lane(0, true, false),
        ];
        assert_eq!(choose(&lanes, counts(3, 10)), Choice::Join(2, true));
        // Retired (even with no request) is never joined.
        let lanes = [lane(RETIRED, true, false), lane(1, true, false)];
        assert_eq!(choose(&lanes, counts(2, 0)), Choice::Join(1, false));
    }

    #[test]
    fn a_new_lane_opens_within_the_share_while_the_budget_has_room() {
        // One busy local lane, share of 2 (4 lanes over 2 workers): open another.
        let lanes = [lane(1, true, false)];
        assert_eq!(
            choose(&lanes, counts(1, 5)),
            Choice::Open(Funding::FreeBudget)
        );
        // The worker has its share (2 local lanes): pipeline on the least loaded.
        let lanes = [lane(3, true, false), lane(2, true, false)];
        assert_eq!(choose(&lanes, counts(2, 5)), Choice::Join(1, false));
        // A lane already opening by this worker counts toward its share.
        let lanes = [lane(3, true, false)];
        let opening = Counts {
            opening: 1,
            opening_here: 1,
            ..counts(1, 5)
        };
        assert_eq!(choose(&lanes, opening), Choice::Join(0, false));
        // Off the workers there is no share: only max_lanes and the budget.
        let lanes = [
            lane(3, true, false),
            lane(2, true, false),
            lane(1, true, false),
        ];
        let off = Counts {
            on_worker: false,
            ..counts(3, 5)
        };
        assert_eq!(choose(&lanes, off), Choice::Open(Funding::FreeBudget));
    }

    #[test]
    fn beyond_the_share_only_when_no_lane_with_room_makes_progress() {
        // Both local lanes stalled: the share no longer holds the worker back.
        let lanes = [lane(3, true, true), lane(2, true, true)];
        assert_eq!(
            choose(&lanes, counts(2, 5)),
            Choice::Open(Funding::FreeBudget)
        );
    }

    #[test]
    fn max_lanes_caps_opening() {
        let lanes = [
            lane(3, true, false),
            lane(2, false, false),
            lane(5, false, false),
            lane(2, true, false),
        ];
        assert_eq!(choose(&lanes, counts(4, 10)), Choice::Join(3, false));
        // Lanes being opened count against the cap too.
        let lanes = [lane(3, true, false)];
        let opening = Counts {
            opening: 3,
            ..counts(1, 10)
        };
        assert_eq!(choose(&lanes, opening), Choice::Join(0, false));
    }

    #[test]
    fn with_the_budget_spent_a_school_pipelines_and_evicts_only_without_room() {
        // A lane with room, no free connection: pipeline on it, even a stalled one.
        let lanes = [lane(1, true, false)];
        assert_eq!(choose(&lanes, counts(1, 0)), Choice::Join(0, false));
        let lanes = [lane(1, true, true)];
        assert_eq!(choose(&lanes, counts(1, 0)), Choice::Join(0, false));
        // No lane at all (or every lane full) and nothing opening: evict another school's.
        assert_eq!(choose(&[], counts(0, 0)), Choice::Open(Funding::Eviction));
        let full = [lane(LIMITS.depth, true, false)];
        assert_eq!(choose(&full, counts(1, 0)), Choice::Open(Funding::Eviction));
        // One eviction at a time: with one opening, wait for it.
        let opening = Counts {
            opening: 1,
            opening_here: 1,
            ..counts(1, 0)
        };
        assert_eq!(choose(&full, opening), Choice::Wait);
        // A burst never opens more lanes than there are free connections.
        let opening = Counts {
            opening: 2,
            ..counts(0, 2)
        };
        assert_eq!(choose(&[], opening), Choice::Wait);
    }

    #[test]
    fn the_order_after_this_workers_lanes() {
        let busy_local = lane(4, true, false);
        let busy_elsewhere = lane(2, false, false);
        let idle_elsewhere = lane(0, false, false);
        let stalled = lane(1, true, true);
        let at_share = counts(2, 0);
        // Own healthy lane before another worker's idle one.
        let lanes = [idle_elsewhere, busy_local, stalled];
        assert_eq!(choose(&lanes, at_share), Choice::Join(1, false));
        // Then another worker's idle lane, before its busy one.
        let lanes = [busy_elsewhere, stalled, idle_elsewhere];
        assert_eq!(choose(&lanes, at_share), Choice::Join(2, true));
        // Then the least loaded healthy lane of another worker.
        let lanes = [lane(5, false, false), stalled, busy_elsewhere];
        assert_eq!(choose(&lanes, at_share), Choice::Join(2, false));
        // A stalled lane only when nothing better can come: not while a lane opens.
        let lanes = [stalled, lane(2, true, true)];
        let opening = Counts {
            opening: 1,
            ..counts(2, 0)
        };
        assert_eq!(choose(&lanes, opening), Choice::Wait);
        // Else the least loaded stalled lane.
        assert_eq!(choose(&lanes, counts(2, 0)), Choice::Join(0, false));
        // Every lane full: wait.
        let full = [lane(8, true, false), lane(9, false, true)];
        let opening = Counts {
            opening: 1,
            ..counts(2, 0)
        };
        assert_eq!(choose(&full, opening), Choice::Wait);
    }

    #[test]
    fn the_least_loaded_lane_of_a_kind_is_chosen() {
        let lanes = [
            lane(5, true, false),
            lane(2, true, false),
            lane(3, true, false),
        ];
        assert_eq!(choose(&lanes, counts(3, 0)), Choice::Join(1, false));
    }

    #[test]
    fn stalled_is_stuck_or_lagging_behind_the_school() {
        // No request on it: never stalled, however long it sat.
        assert!(!is_stalled(0, 0, 10_000, 0));
        // Busy, no progress for STUCK_MS: stalled even when no other lane moved.
        assert!(is_stalled(1, 1_000, 1_000 + STUCK_MS, 1_000));
        assert!(!is_stalled(1, 1_000, 1_000 + STUCK_MS - 1, 1_000));
        // Busy for LAGGING_MS while another lane of the school progressed since: stalled.
        assert!(is_stalled(1, 1_000, 1_000 + LAGGING_MS, 1_000 + LAGGING_MS));
        // Busy for as long, but nothing else progressed (a descheduled thread): not yet.
        assert!(!is_stalled(
            1,
            1_000,
            1_000 + LAGGING_MS,
            1_000 + LAGGING_MS - 1
        ));
        // Not busy long enough, however far ahead the school is.
        assert!(!is_stalled(1, 1_000, 1_000 + LAGGING_MS - 1, 1_000 + 50));
        // Clocks read out of order never underflow.
        assert!(!is_stalled(1, 2_000, 1_000, 500));
    }
}
