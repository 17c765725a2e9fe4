//! The published-menu cache: public-week answers (the week's body with its ETag, or "No
//! menu has been published") kept in memory, keyed by the school's database and the week.
//!
//! **Why per-worker shards.** Each data-path worker thread (`pool::worker`) has its own
//! shard: a map behind a mutex that only that worker takes on the request path, so a hit
//! costs an uncontended lock, two hash lookups and a reference-count increment, and no
//! cache line bounces between workers. The control path takes a shard's mutex only to
//! drop entries (an invalidation), never across an await. A concurrent map with lock-free
//! reads (papaya, scc) would share one hit path between workers at the price of epoch
//! reclamation and a shared eviction order; with a handful of workers, each filling its
//! own shard costs only one extra miss per worker and key. `[cache] max_bytes` is split
//! evenly between the shards, so the whole stays within it.
//!
//! **Invalidation.** Every school hashes to one slot of an array of generation counters
//! (two schools sharing a slot only cost each other extra misses), and a global epoch
//! counts full clears. An entry remembers the generation and epoch read *before* its query
//! started; a hit compares them with the current ones (two atomic loads), and an insert
//! checks them under the shard's mutex. Dropping a school bumps its generation, then sweeps
//! the shards: an entry inserted before the bump is swept, one inserted after is refused,
//! so a query that started before a write can never store its old answer after the write's
//! invalidation.
//!
//! **Single flight.** Concurrent misses of one key, on any worker, run one query: the
//! first becomes the leader, the others wait for its answer (a `watch` channel). A follower
//! joins only a flight that started at the current generation, so a request that arrives
//! after a write never gets an answer read before it. When the leader fails or is
//! cancelled, each follower runs its own query.
//!
//! **Eviction** is by size: each shard evicts in CLOCK order (an entry hit since the hand
//! last passed gets a second chance) until its bytes fit. An entry older than `max_age` is
//! a miss.
//!
//! **Live.** The cache answers only while [`MenuCache::set_live`] says the catalog's
//! notification connection is up (`control::menu_notify`); otherwise every request goes to
//! the database, since a write on another replica could not reach this one.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use tokio::sync::watch;

use crate::config::CacheConfig;
use crate::domain::date::Date;

/// Generation slots schools hash into.
const GENERATION_SLOTS: usize = 4096;

/// What an entry costs beyond its body and tag: the key, the map slots, the CLOCK record.
const ENTRY_OVERHEAD: usize = 160;

/// One public-week answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Menu {
    /// 200: the week's body and its ETag (`None` only if the tag were not a valid header
    /// value, which a tag of hex digits and punctuation always is).
    Week {
        body: Bytes,
        etag: Option<HeaderValue>,
    },
    /// 404: "No menu has been published for the week of ...".
    NotPublished,
}

impl Menu {
    fn cost(&self, database: &str) -> usize {
        let value = match self {
            Menu::Week { body, etag } => body.len() + etag.as_ref().map_or(0, HeaderValue::len),
            Menu::NotPublished => 0,
        };
        value + database.len() + ENTRY_OVERHEAD
    }
}

/// How a request was answered, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From memory.
    Hit,
    /// From another request's query of the same key (single flight).
    Joined,
    /// By its own query, then stored.
    Miss,
    /// By its own query, cache not live (disabled, or notifications down).
    Bypassed,
}

/// Who dropped a school's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A write on this replica, a catalog change it saw, or the admin API.
    Local,
    /// A notification from another replica.
    Remote,
}

/// The counters `/metrics` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub joined: u64,
    pub misses: u64,
    pub bypassed: u64,
    pub invalidations_local: u64,
    pub invalidations_remote: u64,
    pub bytes: u64,
    pub entries: u64,
    pub max_bytes: u64,
    pub live: bool,
}

/// The generation an answer was read at: the school's slot and the clear epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    school: u64,
    epoch: u64,
}

struct Entry {
    menu: Menu,
    cost: usize,
    stored_at: Instant,
    stamp: Stamp,
    /// Matches the CLOCK record of this entry (older records are stale).
    id: u64,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    schools: HashMap<Arc<str>, HashMap<Date, Entry>>,
    clock: VecDeque<(Arc<str>, Date, u64)>,
    bytes: usize,
    entries: usize,
    next_id: u64,
}

impl Shard {
    fn remove(&mut self, database: &str, week: Date) -> Option<Entry> {
        let weeks = self.schools.get_mut(database)?;
        let entry = weeks.remove(&week)?;
        if weeks.is_empty() {
            self.schools.remove(database);
        }
        self.bytes -= entry.cost;
        self.entries -= 1;
        Some(entry)
    }

    /// Drops every entry of `database`; returns (bytes, entries) freed.
    fn drop_school(&mut self, database: &str) -> (usize, usize) {
        let Some(weeks) = self.schools.remove(database) else {
            return (0, 0);
        };
        let bytes: usize = weeks.values().map(|e| e.cost).sum();
        self.bytes -= bytes;
        self.entries -= weeks.len();
        self.compact_clock();
        (bytes, weeks.len())
    }

    fn clear(&mut self) -> (usize, usize) {
        let freed = (self.bytes, self.entries);
        *self = Shard {
            next_id: self.next_id,
            ..Shard::default()
        };
        freed
    }

    /// Inserts (replacing any entry of the key), then evicts in CLOCK order until the
    /// shard's bytes are within `budget`. Returns the change in (bytes, entries).
    fn insert(
        &mut self,
        database: &Arc<str>,
        week: Date,
        entry: Entry,
        budget: usize,
    ) -> (isize, isize) {
        let before = (self.bytes as isize, self.entries as isize);
        self.remove(database, week);
        self.bytes += entry.cost;
        self.entries += 1;
        self.clock.push_back((database.clone(), week, entry.id));
        self.schools
            .entry(database.clone())
            .or_default()
            .insert(week, entry);
        while self.bytes > budget {
            let Some((database, week, id)) = self.clock.pop_front() else {
                break;
            };
            let Some(entry) = self
                .schools
                .get_mut(&database)
                .and_then(|weeks| weeks.get_mut(&week))
                .filter(|entry| entry.id == id)
            else {
                continue; // a record of an entry already gone
            };
            if entry.referenced {
                entry.referenced = false;
                self.clock.push_back((database, week, id));
            } else {
                self.remove(&database, week);
            }
        }
        self.compact_clock();
        (
            self.bytes as isize - before.0,
            self.entries as isize - before.1,
        )
    }

    /// Forgets CLOCK records of entries already gone once they outnumber the live ones.
    fn compact_clock(&mut self) {
        if self.clock.len() > 2 * self.entries + 64 {
            let schools = &self.schools;
            self.clock.retain(|(database, week, id)| {
                schools
                    .get(database)
                    .and_then(|weeks| weeks.get(week))
                    .is_some_and(|entry| entry.id == *id)
            });
        }
    }
}

/// A query in progress for one key, which other misses of the key may wait for.
struct Flight {
    id: u64,
    stamp: Stamp,
    answer: Arc<watch::Sender<Option<Menu>>>,
}

type FlightKey = (Arc<str>, Date);

/// The published-menu cache of one process.
pub struct MenuCache {
    enabled: bool,
    max_bytes: usize,
    max_age: Duration,
    shard_budget: usize,
    shards: Box<[Mutex<Shard>]>,
    generations: Box<[AtomicU64]>,
    epoch: AtomicU64,
    live: AtomicBool,
    /// Misses in progress; taken only on a miss, never on a hit.
    flights: Mutex<HashMap<FlightKey, Flight>>,
    next_flight: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    hits: AtomicU64,
    joined: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    invalidations: [AtomicU64; 2],
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl MenuCache {
    /// A cache for `workers` worker threads; not live until [`set_live`](Self::set_live).
    pub fn new(config: &CacheConfig, workers: usize) -> Self {
        let shards = workers.max(1);
        let max_bytes = usize::try_from(config.max_bytes).unwrap_or(usize::MAX);
        Self {
            enabled: config.enabled,
            max_bytes,
            max_age: config.max_age,
            shard_budget: max_bytes / shards,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            generations: (0..GENERATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            flights: Mutex::default(),
            next_flight: AtomicU64::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
            hits: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            invalidations: [AtomicU64::new(0), AtomicU64::new(0)],
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        }
    }

    /// `[cache] enabled`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether answers are served from and stored in memory now.
    pub fn is_live(&self) -> bool {
        self.enabled && self.live.load(Ordering::SeqCst)
    }

    /// Turns the cache on (the notification connection is listening) or off (it is down).
    /// Turning it on clears it first: notifications may have been lost while it was off.
    pub fn set_live(&self, live: bool) {
        if live {
            self.clear();
        }
        self.live.store(live, Ordering::SeqCst);
    }

    /// The answer for `database`'s week: from memory, from a query of the same key already
    /// running, or from `fetch` (then stored). `fetch` runs at most once.
    pub async fn get_or_fetch<E, F, Fut>(
        &self,
        database: &Arc<str>,
        week: Date,
        fetch: F,
    ) -> Result<(Menu, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Menu, E>>,
    {
        if !self.is_live() {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            return Ok((fetch().await?, Outcome::Bypassed));
        }
        if let Some(menu) = self.get(database, week) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((menu, Outcome::Hit));
        }
        let stamp = self.stamp(database);
        let leader = match self.join_or_lead(database, week, stamp) {
            Ok(mut answer) => {
                if let Ok(menu) = answer.wait_for(Option::is_some).await {
                    if let Some(menu) = menu.clone() {
                        self.joined.fetch_add(1, Ordering::Relaxed);
                        return Ok((menu, Outcome::Joined));
                    }
                }
                // The leader failed or was cancelled: this request queries on its own.
                None
            }
            Err(leader) => Some(leader),
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        let menu = fetch().await?;
        self.insert(database, week, menu.clone(), stamp);
        if let Some(leader) = leader {
            leader.answer.send_replace(Some(menu.clone()));
        }
        Ok((menu, Outcome::Miss))
    }

    /// A hit, or `None`.
    fn get(&self, database: &str, week: Date) -> Option<Menu> {
        let stamp = self.stamp(database);
        let mut shard = self.shard();
        let entry = shard.schools.get_mut(database)?.get_mut(&week)?;
        if entry.stamp == stamp && entry.stored_at.elapsed() < self.max_age {
            entry.referenced = true;
            return Some(entry.menu.clone());
        }
        if let Some(gone) = shard.remove(database, week) {
            self.account(-(gone.cost as isize), -1);
        }
        None
    }

    /// Joins the flight of this key (its answer), or becomes its leader.
    fn join_or_lead(
        &self,
        database: &Arc<str>,
        week: Date,
        stamp: Stamp,
    ) -> Result<watch::Receiver<Option<Menu>>, Leader<'_>> {
        let mut flights = lock(&self.flights);
        let key = (database.clone(), week);
        if let Some(flight) = flights.get(&key).filter(|f| f.stamp == stamp) {
            return Ok(flight.answer.subscribe());
        }
        let answer = Arc::new(watch::Sender::new(None));
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(
            key.clone(),
            Flight {
                id,
                stamp,
                answer: answer.clone(),
            },
        );
        Err(Leader {
            cache: self,
            key,
            id,
            answer,
        })
    }

    /// Stores an answer read at `stamp`, unless the school was invalidated since.
    fn insert(&self, database: &Arc<str>, week: Date, menu: Menu, stamp: Stamp) {
        let cost = menu.cost(database);
        if cost > self.shard_budget {
            return;
        }
        let mut shard = self.shard();
        // Checked under the shard's mutex: an invalidation bumps the generation before it
        // sweeps the shards, so either this sees the bump or the sweep sees this entry.
        if self.stamp(database) != stamp || !self.is_live() {
            return;
        }
        let id = shard.next_id;
        shard.next_id += 1;
        let entry = Entry {
            menu,
            cost,
            stored_at: Instant::now(),
            stamp,
            id,
            referenced: false,
        };
        let (bytes, entries) = shard.insert(database, week, entry, self.shard_budget);
        drop(shard);
        self.account(bytes, entries);
    }

    /// Drops every entry of `database` (a write, a catalog change, a notification, the
    /// admin API) and any answer being read for it.
    pub fn drop_school(&self, database: &str, origin: Origin) {
        self.invalidations[origin as usize].fetch_add(1, Ordering::Relaxed);
        self.generations[self.slot(database)].fetch_add(1, Ordering::SeqCst);
        for shard in self.shards.iter() {
            let (bytes, entries) = lock(shard).drop_school(database);
            self.account(-(bytes as isize), -(entries as isize));
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for shard in self.shards.iter() {
            let (bytes, entries) = lock(shard).clear();
            self.account(-(bytes as isize), -(entries as isize));
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            invalidations_local: self.invalidations[Origin::Local as usize].load(Ordering::Relaxed),
            invalidations_remote: self.invalidations[Origin::Remote as usize]
                .load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            max_bytes: self.max_bytes as u64,
            live: self.is_live(),
        }
    }

    fn account(&self, bytes: isize, entries: isize) {
        let add = |counter: &AtomicU64, delta: isize| {
            if delta >= 0 {
                counter.fetch_add(delta as u64, Ordering::Relaxed);
            } else {
                counter.fetch_sub(delta.unsigned_abs() as u64, Ordering::Relaxed);
            }
        };
        add(&self.bytes, bytes);
        add(&self.entries, entries);
    }

    fn stamp(&self, database: &str) -> Stamp {
        Stamp {
            school: self.generations[self.slot(database)].load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    fn slot(&self, database: &str) -> usize {
        (self.hasher.hash_one(database) as usize) % GENERATION_SLOTS
    }

    /// This worker's shard (the first one off the workers).
    fn shard(&self) -> MutexGuard<'_, Shard> {
        let index = crate::pool::worker::current().unwrap_or(0) % self.shards.len();
        lock(&self.shards[index])
    }
}

/// The leader of a flight: removes the flight when done (answered, failed or cancelled);
/// followers left without an answer then query on their own.
struct Leader<'a> {
    cache: &'a MenuCache,
    key: FlightKey,
    id: u64,
    answer: Arc<watch::Sender<Option<Menu>>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.cache.flights);
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the map is still whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache(max_bytes: u64, workers: usize) -> MenuCache {
        let cache = MenuCache::new(
            &CacheConfig {
                enabled: true,
                max_bytes,
                max_age: Duration::from_secs(300),
            },
            workers,
        );
        cache.set_live(true);
        cache
    }

    fn week(day: u32) -> Date {
        Date::parse(&format!("2026-01-{day:02}")).unwrap()
    }

    fn menu(text: &str) -> Menu {
        Menu::Week {
            body: Bytes::from(text.to_owned()),
            etag: Some(HeaderValue::from_static("W/\"1-1\"")),
        }
    }

    async fn load(cache: &MenuCache, db: &Arc<str>, day: u32, text: &str) -> (Menu, Outcome) {
        let text = text.to_owned();
        cache
            .get_or_fetch(db, week(day), || async move { Ok::<_, ()>(menu(&text)) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn keys_are_school_and_week() {
        let cache = cache(1 << 20, 1);
        let (a, b): (Arc<str>, Arc<str>) = ("school_a".into(), "school_b".into());
        assert_eq!(load(&cache, &a, 5, "a5").await, (menu("a5"), Outcome::Miss));
        assert_eq!(load(&cache, &b, 5, "b5").await, (menu("b5"), Outcome::Miss));
        assert_eq!(load(&cache, &a, 6, "a6").await, (menu("a6"), Outcome::Miss));
        assert_eq!(load(&cache, &a, 5, "x").await, (menu("a5"), Outcome::Hit));
        assert_eq!(load(&cache, &b, 5, "x").await, (menu("b5"), Outcome::Hit));
        assert_eq!(load(&cache, &a, 6, "x").await, (menu("a6"), Outcome::Hit));
        // Dropping one school leaves the other's entries.
        cache.drop_school("school_a", Origin::Local);
        assert_eq!(
            load(&cache, &a, 5, "a5'").await,
            (menu("a5'"), Outcome::Miss)
        );
        assert_eq!(load(&cache, &b, 5, "x").await, (menu("b5"), Outcome::Hit));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (4, 4, 2));
        assert_eq!(stats.invalidations_local, 1);
    }

    #[tokio::test]
    async fn bytes_stay_within_the_bound_and_hot_entries_stay() {
        let body = "x".repeat(1000);
        let db: Arc<str> = "school_a".into();
        let cost = menu(&body).cost(&db) as u64;
        // Room for 10 entries in each of two shards.
        let cache = cache(cost * 20, 2);
        load(&cache, &db, 1, &body).await;
        for day in 2..=28 {
            load(&cache, &db, day, &body).await;
            // Day 1 is read between inserts: CLOCK keeps it.
            assert_eq!(
                load(&cache, &db, 1, &body).await.1,
                Outcome::Hit,
                "day {day}"
            );
            let stats = cache.stats();
            assert!(stats.bytes <= cost * 10, "{} > {}", stats.bytes, cost * 10);
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 10);
        assert_eq!(stats.bytes, cost * 10);
        // An answer larger than a shard's share is served, not stored.
        let big = "y".repeat(cost as usize * 11);
        load(&cache, &db, 30, &big).await;
        assert_eq!(load(&cache, &db, 30, "z").await.1, Outcome::Miss);
        cache.clear();
        assert_eq!((cache.stats().bytes, cache.stats().entries), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_of_one_key_run_one_query() {
        let cache = Arc::new(cache(1 << 20, 1));
        let db: Arc<str> = "school_a".into();
        let queries = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, db, queries) = (cache.clone(), db.clone(), queries.clone());
            let mut released = released.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&db, week(5), || async move {
                        queries.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|r| *r).await;
                        Ok::<_, ()>(menu("a5"))
                    })
                    .await
                    .unwrap()
            }));
        }
        // Every other request waits on the leader's answer before the query returns.
        let followers = || {
            lock(&cache.flights)
                .values()
                .map(|f| f.answer.receiver_count())
                .sum::<usize>()
        };
        // (Released after a deadline regardless: without single flight, nobody follows.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while followers() < 19 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        let mut outcomes = Vec::new();
        for task in tasks {
            let (answer, outcome) = task.await.unwrap();
            assert_eq!(answer, menu("a5"));
            outcomes.push(outcome);
        }
        assert_eq!(queries.load(Ordering::SeqCst), 1, "{outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Miss).count(), 1);
        assert!(lock(&cache.flights).is_empty());
    }

    #[tokio::test]
    async fn a_query_started_before_an_invalidation_is_not_stored() {
        let cache = cache(1 << 20, 1);
        let db: Arc<str> = "school_a".into();
        let answer = cache
            .get_or_fetch(&db, week(5), || async {
                // A write lands while the old answer is being read.
                cache.drop_school("school_a", Origin::Remote);
                Ok::<_, ()>(menu("old"))
            })
            .await
            .unwrap();
        assert_eq!(answer, (menu("old"), Outcome::Miss));
        assert_eq!(cache.stats().entries, 0, "the old answer was not stored");
        assert_eq!(
            load(&cache, &db, 5, "new").await,
            (menu("new"), Outcome::Miss)
        );
        assert_eq!(load(&cache, &db, 5, "x").await, (menu("new"), Outcome::Hit));
        assert_eq!(cache.stats().invalidations_remote, 1);
    }

    #[tokio::test]
    async fn a_failed_leader_leaves_followers_to_query_and_nothing_stored() {
        let cache = cache(1 << 20, 1);
        let db: Arc<str> = "school_a".into();
        let failed = cache
            .get_or_fetch(&db, week(5), || async { Err::<Menu, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert!(lock(&cache.flights).is_empty());
        assert_eq!(load(&cache, &db, 5, "a5").await.1, Outcome::Miss);
    }

    #[tokio::test]
    async fn not_live_means_every_request_queries() {
        let cache = cache(1 << 20, 1);
        let db: Arc<str> = "school_a".into();
        load(&cache, &db, 5, "a5").await;
        cache.set_live(false);
        assert_eq!(
            load(&cache, &db, 5, "b").await,
            (menu("b"), Outcome::Bypassed)
        );
        // Back live: cleared, since notifications may have been lost meanwhile.
        cache.set_live(true);
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(load(&cache, &db, 5, "c").await, (menu("c"), Outcome::Miss));
        assert_eq!(
            load(&cache, &db, 5, "d").await,
            (menu("c"), Outcome::Hit),
            "NotPublished and weeks alike are stored"
        );
    }
}
