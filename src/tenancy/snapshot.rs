//! The catalog snapshot: an immutable map from school database name and from slug to the
//! school, with its pool.
//!
//! A request loads the current snapshot once (an `ArcSwap` load, no lock) and reads it;
//! only the control loop makes a new one and swaps it in whole. The maps are persistent
//! (`imbl`): [`Snapshot::update`] makes the next snapshot from the current one in
//! O(changed × log n), sharing every untouched entry, so a change of one school among
//! 100,000 copies no table. [`Snapshot::build`] makes one from every catalog row (a full
//! read). Both reuse the `TenantPool` of every school that is still there, so a refresh
//! never drops an unchanged school's connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::store::SchoolRecord;
use crate::domain::names;
use crate::domain::names::Slug;
use crate::domain::status::SchoolStatus;
use crate::pool::{PoolSettings, TenantPool};

/// One school's request counter. A tenant holds its `Arc` and bumps it per request; the
/// metrics registry keeps the same `Arc`, so a rebuilt tenant keeps its count.
#[derive(Debug, Default)]
pub struct SchoolCounter {
    requests: AtomicU64,
}

impl SchoolCounter {
    pub fn increment(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// One school as the data path sees it.
pub struct Tenant {
    pub id: i32,
    pub name: String,
    pub database: Arc<str>,
    pub slug: Arc<str>,
    pub status: SchoolStatus,
    /// The app_sql version its database is at.
    pub db_version: i32,
    pub last_error: Option<String>,
    pub pool: Arc<TenantPool>,
    /// This school's request counter in the metrics (shared across snapshots).
    pub requests: Arc<SchoolCounter>,
}

/// The catalog as of one refresh.
#[derive(Clone)]
pub struct Snapshot {
    /// Increases by one with every swap (for metrics and logs).
    pub generation: u64,
    /// When the whole catalog was last read ([`Snapshot::build`]); an incremental update
    /// keeps it, so the snapshot's age says how long ago every row was last confirmed.
    pub loaded_at: Instant,
    by_database: imbl::HashMap<Arc<str>, Arc<Tenant>>,
    by_slug: imbl::HashMap<Arc<str>, Arc<Tenant>>,
    /// Schools per status, indexed by [`status_slot`].
    counts: [usize; 3],
}

/// A catalog row that was left out of the snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub school_id: i32,
    pub database: String,
    pub reason: String,
    /// Left out because another school holds its slug: it may be admitted once that
    /// school goes or changes its slug, which only a full read decides.
    pub duplicate_slug: bool,
}

/// An incremental update met a slug held by a school it was not asked about: the
/// snapshot's view of that school is stale (the catalog's unique index on `slug` rules the
/// conflict out within one read), so only a full read can settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlugConflict {
    pub database: String,
    pub slug: String,
}

fn status_slot(status: SchoolStatus) -> usize {
    match status {
        SchoolStatus::Provisioning => 0,
        SchoolStatus::Active => 1,
        SchoolStatus::Suspended => 2,
    }
}

impl Snapshot {
    /// The snapshot before the catalog was first read: no school is reachable.
    pub fn empty() -> Self {
        Self {
            generation: 0,
            loaded_at: Instant::now(),
            by_database: imbl::HashMap::new(),
            by_slug: imbl::HashMap::new(),
            counts: [0; 3],
        }
    }

    pub fn by_database(&self, database: &str) -> Option<&Arc<Tenant>> {
        self.by_database.get(database)
    }

    pub fn by_slug(&self, slug: Slug<'_>) -> Option<&Arc<Tenant>> {
        self.by_slug.get(slug.as_str())
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_database.values()
    }

    pub fn len(&self) -> usize {
        self.by_database.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_database.is_empty()
    }

    /// How many schools have `status`.
    pub fn count(&self, status: SchoolStatus) -> usize {
        self.counts[status_slot(status)]
    }

    /// Builds the next snapshot from every catalog row (ordered by id). Pools of schools
    /// present in `previous` are reused; rows that cannot be served (bad database name,
    /// unknown status, duplicate slug) are left out and returned, never taking the whole
    /// refresh down.
    pub fn build(
        records: &[SchoolRecord],
        previous: &Snapshot,
        settings: &Arc<PoolSettings>,
        catalog_database: &str,
        counter_for: &dyn Fn(&str) -> Arc<SchoolCounter>,
    ) -> (Self, Vec<Rejected>) {
        let mut next = Self {
            generation: previous.generation + 1,
            loaded_at: Instant::now(),
            ..Self::empty()
        };
        let mut rejected = Vec::new();
        for record in records {
            match next.admit(record, catalog_database) {
                Ok(status) => next.insert(record, status, previous, settings, counter_for),
                Err(reject) => rejected.push(reject),
            }
        }
        (next, rejected)
    }

    /// The next snapshot after re-reading the schools named in `databases`: each named
    /// school is replaced by its row in `records` (the rows read for those names, ordered
    /// by id), or dropped when it has none. Every other school is shared with `self`.
    /// Returns the named rows that were left out, as [`Snapshot::build`] would, or the
    /// conflict that needs a full read.
    pub fn update(
        &self,
        databases: &[String],
        records: &[SchoolRecord],
        settings: &Arc<PoolSettings>,
        catalog_database: &str,
        counter_for: &dyn Fn(&str) -> Arc<SchoolCounter>,
    ) -> Result<(Self, Vec<Rejected>), SlugConflict> {
        let mut next = self.clone();
        next.generation += 1;
        for database in databases {
            next.remove(database);
        }
        let mut rejected = Vec::new();
        for record in records {
            match next.admit(record, catalog_database) {
                Ok(status) => next.insert(record, status, self, settings, counter_for),
                Err(reject) if reject.duplicate_slug => {
                    return Err(SlugConflict {
                        database: record.database.clone(),
                        slug: record.slug.clone(),
                    });
                }
                Err(reject) => rejected.push(reject),
            }
        }
        Ok((next, rejected))
    }

    /// The row's status when it can be served, or why not.
    fn admit(
        &self,
        record: &SchoolRecord,
        catalog_database: &str,
    ) -> Result<SchoolStatus, Rejected> {
        let reject = |reason: String| Rejected {
            school_id: record.id,
            database: record.database.clone(),
            reason,
            duplicate_slug: false,
        };
        if let Err(err) = names::validate_database_name(&record.database) {
            return Err(reject(err.to_string()));
        }
        if record.database == catalog_database {
            return Err(reject("names the catalog database".into()));
        }
        let status = match &record.status {
            Ok(status) => *status,
            Err(unknown) => return Err(reject(unknown.to_string())),
        };
        if Slug::parse(&record.slug).is_none() {
            return Err(reject(format!("invalid slug {:?}", record.slug)));
        }
        if self.by_database.contains_key(record.database.as_str()) {
            return Err(reject("duplicate database".into()));
        }
        if self.by_slug.contains_key(record.slug.as_str()) {
            return Err(Rejected {
                duplicate_slug: true,
                ..reject(format!("duplicate slug {:?}", record.slug))
            });
        }
        Ok(status)
    }

    /// Adds an admitted row, reusing the pool and counter `previous` has for it.
    fn insert(
        &mut self,
        record: &SchoolRecord,
        status: SchoolStatus,
        previous: &Snapshot,
        settings: &Arc<PoolSettings>,
        counter_for: &dyn Fn(&str) -> Arc<SchoolCounter>,
    ) {
        let (pool, requests) = match previous.by_database(&record.database) {
            Some(existing) => (existing.pool.clone(), existing.requests.clone()),
            None => (
                TenantPool::new(&record.database, settings.clone()),
                counter_for(&record.database),
            ),
        };
        let tenant = Arc::new(Tenant {
            id: record.id,
            name: record.name.clone(),
            database: pool.database.clone(),
            slug: record.slug.as_str().into(),
            status,
            db_version: record.db_version,
            last_error: record.last_error.clone(),
            pool,
            requests,
        });
        self.counts[status_slot(status)] += 1;
        self.by_slug.insert(tenant.slug.clone(), tenant.clone());
        self.by_database.insert(tenant.database.clone(), tenant);
    }

    fn remove(&mut self, database: &str) {
        if let Some(old) = self.by_database.remove(database) {
            self.by_slug.remove(&*old.slug);
            self.counts[status_slot(old.status)] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Budget;

    fn record(id: i32, database: &str, slug: &str, status: &str) -> SchoolRecord {
        SchoolRecord {
            id,
            name: format!("School {id}"),
            database: database.into(),
            slug: slug.into(),
            status: status.parse(),
            db_version: 1,
            last_error: None,
            provision_attempts: 0,
        }
    }

    fn settings() -> Arc<PoolSettings> {
        let config =
            crate::config::from_str("", std::path::Path::new("t.toml"), &|_| None).unwrap();
        Arc::new(PoolSettings::new(&config.tenants, Budget::new(10), 1, &[]))
    }

    fn counters() -> impl Fn(&str) -> Arc<SchoolCounter> {
        |_| Arc::new(SchoolCounter::default())
    }

    #[test]
    fn invalid_rows_are_skipped_and_named() {
        let rows = vec![
            record(1, "school_a", "school-a", "active"),
            record(2, "Bad-Name", "bad-name", "active"),
            record(3, "school_c", "school-a", "active"),
            record(4, "school_d", "school-d", "archived"),
            record(5, "catalog", "catalog", "active"),
            record(6, "school_f", "School F", "active"),
        ];
        let (snapshot, rejected) = Snapshot::build(
            &rows,
            &Snapshot::empty(),
            &settings(),
            "catalog",
            &counters(),
        );
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot.generation, 1);
        let named: Vec<(i32, &str)> = rejected
            .iter()
            .map(|r| (r.school_id, r.reason.as_str()))
            .collect();
        assert_eq!(named.len(), 5, "{named:?}");
        assert!(named[0].1.contains("lowercase"));
        assert!(named[1].1.contains("duplicate slug"));
        assert_eq!(named[2].1, "unknown status \"archived\"");
        assert!(named[3].1.contains("catalog"));
        assert!(named[4].1.contains("invalid slug"));
        let tenant = snapshot.by_slug(Slug::parse("school-a").unwrap()).unwrap();
        assert_eq!(&*tenant.database, "school_a");
        assert!(snapshot.by_database("school_c").is_none());
    }

    #[test]
    fn unchanged_schools_keep_their_pool() {
        let settings = settings();
        let first = vec![
            record(1, "school_a", "school-a", "active"),
            record(2, "school_b", "school-b", "active"),
        ];
        let (one, _) = Snapshot::build(
            &first,
            &Snapshot::empty(),
            &settings,
            "catalog",
            &counters(),
        );
        let mut second = first.clone();
        second[0].name = "Renamed".into();
        second[1].status = Ok(SchoolStatus::Suspended);
        second.push(record(3, "school_c", "school-c", "provisioning"));
        let (two, _) = Snapshot::build(&second, &one, &settings, "catalog", &counters());
        assert_eq!(two.generation, 2);
        for db in ["school_a", "school_b"] {
            assert!(Arc::ptr_eq(
                &one.by_database(db).unwrap().pool,
                &two.by_database(db).unwrap().pool
            ));
        }
        assert_eq!(two.by_database("school_a").unwrap().name, "Renamed");
        assert_eq!(
            two.by_database("school_b").unwrap().status,
            SchoolStatus::Suspended
        );
        assert_eq!(
            two.by_database("school_c").unwrap().status,
            SchoolStatus::Provisioning
        );
    }

    /// Everything a request or the admin API can see of a snapshot, in a comparable form.
    #[allow(clippy::type_complexity)]
    fn view(
        snapshot: &Snapshot,
    ) -> Vec<(
        String,
        i32,
        String,
        String,
        &'static str,
        i32,
        Option<String>,
    )> {
        let mut rows: Vec<_> = snapshot
            .tenants()
            .map(|t| {
                let by_slug = snapshot.by_slug(Slug::parse(&t.slug).unwrap()).unwrap();
                assert!(Arc::ptr_eq(by_slug, t), "{} by slug", t.database);
                (
                    t.database.to_string(),
                    t.id,
                    t.name.clone(),
                    t.slug.to_string(),
                    t.status.as_str(),
                    t.db_version,
                    t.last_error.clone(),
                )
            })
            .collect();
        rows.sort();
        assert_eq!(snapshot.by_slug.len(), rows.len());
        for status in [
            SchoolStatus::Provisioning,
            SchoolStatus::Active,
            SchoolStatus::Suspended,
        ] {
            let counted = rows.iter().filter(|r| r.4 == status.as_str()).count();
            assert_eq!(snapshot.count(status), counted, "{status}");
        }
        rows
    }

    /// One random change to `rows` (as the catalog, with its unique indexes, allows), and
    /// the database names its notifications carry.
    fn random_change(
        rng: &mut impl rand::Rng,
        rows: &mut Vec<SchoolRecord>,
        next_id: &mut i32,
    ) -> Vec<String> {
        let op = if rows.is_empty() {
            0
        } else {
            rng.random_range(0..7)
        };
        if op == 0 {
            // Add; now and then a row that cannot be served.
            let id = *next_id;
            *next_id += 1;
            let database = match rng.random_range(0..10) {
                0 => format!("Bad_{id}"),
                _ => format!("school_{id}"),
            };
            let status = ["provisioning", "active", "archived"][rng.random_range(0..3)];
            rows.push(record(id, &database, &format!("slug-{id}"), status));
            return vec![database];
        }
        let at = rng.random_range(0..rows.len());
        let mut named = vec![rows[at].database.clone()];
        let row = &mut rows[at];
        match op {
            1 => row.status = Ok(SchoolStatus::Suspended),
            2 => row.status = Ok(SchoolStatus::Active),
            // A new slug no other row holds.
            3 => row.slug = format!("renamed-{}-{}", row.id, rng.random_range(0..1000)),
            4 => {
                rows.remove(at);
            }
            5 => {
                // A provisioning result.
                row.db_version += 1;
                row.last_error = None;
                if row.status == Ok(SchoolStatus::Provisioning) {
                    row.status = Ok(SchoolStatus::Active);
                }
            }
            _ => {
                // The database renamed: the notification names old and new.
                row.database = format!("moved_{}_{}", row.id, rng.random_range(0..1000));
                named.push(row.database.clone());
            }
        }
        named
    }

    /// Random sequences of catalog changes (add, suspend, resume, new slug, remove,
    /// provisioning result, new database name), each batch applied both ways:
    /// incrementally to the previous snapshot (re-reading only the named schools) and by a
    /// full build from every row. The two must agree, and a school already there keeps its
    /// pool either way.
    #[test]
    fn incremental_updates_agree_with_full_builds() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let settings = settings();
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rows: Vec<SchoolRecord> = Vec::new();
            let mut next_id = 1;
            let mut incremental = Snapshot::empty();
            for _batch in 0..30 {
                let mut named = Vec::new();
                for _ in 0..rng.random_range(1..4) {
                    named.extend(random_change(&mut rng, &mut rows, &mut next_id));
                }
                let read: Vec<SchoolRecord> = rows
                    .iter()
                    .filter(|r| named.contains(&r.database))
                    .cloned()
                    .collect();
                let (updated, _) = incremental
                    .update(&named, &read, &settings, "catalog", &counters())
                    .unwrap_or_else(|c| panic!("seed {seed}: {c:?}"));
                let (full, _) =
                    Snapshot::build(&rows, &incremental, &settings, "catalog", &counters());
                assert_eq!(view(&updated), view(&full), "seed {seed}, named {named:?}");
                let kept = full
                    .tenants()
                    .filter(|t| incremental.by_database(&t.database).is_some());
                for t in kept {
                    let u = updated.by_database(&t.database).unwrap();
                    assert!(Arc::ptr_eq(&u.pool, &t.pool), "seed {seed}: {}", t.database);
                }
                incremental = updated;
            }
        }
    }

    #[test]
    fn an_update_meeting_a_stale_slug_asks_for_a_full_read() {
        let settings = settings();
        let rows = vec![
            record(1, "school_a", "school-a", "active"),
            record(2, "school_b", "school-b", "active"),
        ];
        let empty = Snapshot::empty();
        let (one, _) = Snapshot::build(&rows, &empty, &settings, "catalog", &counters());
        // school_a gave up its slug and school_b took it, but only school_b was named.
        let read = vec![record(2, "school_b", "school-a", "active")];
        let named = ["school_b".to_string()];
        let conflict = one
            .update(&named, &read, &settings, "catalog", &counters())
            .err()
            .unwrap();
        assert_eq!(conflict.database, "school_b");
        // Named together, the same change is fine.
        let read = vec![
            record(1, "school_a", "school-x", "active"),
            record(2, "school_b", "school-a", "active"),
        ];
        let named = ["school_a".to_string(), "school_b".to_string()];
        let (two, rejected) = one
            .update(&named, &read, &settings, "catalog", &counters())
            .unwrap();
        assert!(rejected.is_empty());
        let holder = two.by_slug(Slug::parse("school-a").unwrap()).unwrap();
        assert_eq!(&*holder.database, "school_b");
        assert_eq!(two.generation, 2);
        // A school named but without a row is gone.
        let named = ["school_a".to_string()];
        let (three, _) = two
            .update(&named, &[], &settings, "catalog", &counters())
            .unwrap();
        assert!(three.by_database("school_a").is_none());
        assert!(three.by_slug(Slug::parse("school-x").unwrap()).is_none());
        assert_eq!(three.count(SchoolStatus::Active), 1);
        // The earlier snapshots are untouched.
        assert_eq!((one.len(), two.len()), (2, 2));
    }
}
