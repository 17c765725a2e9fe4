//! The catalog snapshot: an immutable map from school database name and from slug to the
//! school, with its pool.
//!
//! A request loads the current snapshot once (an `ArcSwap` load, no lock) and reads it;
//! only the control loop builds a new one and swaps it in whole. Building reuses the
//! `TenantPool` of every school that is still there, so a refresh never drops an unchanged
//! school's connections.

use std::collections::HashMap;
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
    pub slug: Box<str>,
    pub status: SchoolStatus,
    /// The app_sql version its database is at.
    pub db_version: i32,
    pub last_error: Option<String>,
    pub pool: Arc<TenantPool>,
    /// This school's request counter in the metrics (shared across snapshots).
    pub requests: Arc<SchoolCounter>,
}

/// The catalog as of one refresh.
pub struct Snapshot {
    /// Increases by one with every swap (for metrics and logs).
    pub generation: u64,
    pub loaded_at: Instant,
    by_database: HashMap<Arc<str>, Arc<Tenant>>,
    by_slug: HashMap<Box<str>, Arc<Tenant>>,
}

/// A catalog row that was left out of the snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub school_id: i32,
    pub database: String,
    pub reason: String,
}

impl Snapshot {
    /// The snapshot before the catalog was first read: no school is reachable.
    pub fn empty() -> Self {
        Self {
            generation: 0,
            loaded_at: Instant::now(),
            by_database: HashMap::new(),
            by_slug: HashMap::new(),
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

    /// Builds the next snapshot from catalog rows. Pools of schools present in `previous`
    /// are reused; rows that cannot be served (bad database name, unknown status,
    /// duplicate slug) are left out and returned, never taking the whole refresh down.
    pub fn build(
        records: &[SchoolRecord],
        previous: &Snapshot,
        settings: &Arc<PoolSettings>,
        catalog_database: &str,
        counter_for: &dyn Fn(&str) -> Arc<SchoolCounter>,
    ) -> (Self, Vec<Rejected>) {
        let mut by_database: HashMap<Arc<str>, Arc<Tenant>> = HashMap::with_capacity(records.len());
        let mut by_slug: HashMap<Box<str>, Arc<Tenant>> = HashMap::with_capacity(records.len());
        let mut rejected = Vec::new();
        for record in records {
            let reject = |reason: String| Rejected {
                school_id: record.id,
                database: record.database.clone(),
                reason,
            };
            if let Err(err) = names::validate_database_name(&record.database) {
                rejected.push(reject(err.to_string()));
                continue;
            }
            if record.database == catalog_database {
                rejected.push(reject("names the catalog database".into()));
                continue;
            }
            let status = match &record.status {
                Ok(status) => *status,
                Err(unknown) => {
                    rejected.push(reject(unknown.to_string()));
                    continue;
                }
            };
            if Slug::parse(&record.slug).is_none() {
                rejected.push(reject(format!("invalid slug {:?}", record.slug)));
                continue;
            }
            if by_slug.contains_key(record.slug.as_str()) {
                rejected.push(reject(format!("duplicate slug {:?}", record.slug)));
                continue;
            }
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
            by_slug.insert(record.slug.as_str().into(), tenant.clone());
            by_database.insert(tenant.database.clone(), tenant);
        }
        let next = Self {
            generation: previous.generation + 1,
            loaded_at: Instant::now(),
            by_database,
            by_slug,
        };
        (next, rejected)
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
}
