//! Memory of the catalog snapshot per school: the bytes allocated and still live after
//! building a snapshot of 100,000 schools (tenant, pool shell, both map entries, request
//! counter), counted by a wrapping global allocator.
//!
//!     cargo bench --bench catalog_memory

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use tenant_edge::config;
use tenant_edge::lunch::queries::STATEMENTS;
use tenant_edge::pool::{Budget, PoolSettings};
use tenant_edge::telemetry::metrics::Metrics;
use tenant_edge::tenancy::snapshot::Snapshot;
use tenant_edge::tenancy::store::SchoolRecord;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SCHOOLS: i32 = 100_000;

fn main() {
    let config = config::from_str("", Path::new("bench.toml"), &|_| None).expect("config");
    let settings = Arc::new(PoolSettings::new(
        &config.tenants,
        Budget::new(80),
        1,
        &STATEMENTS,
    ));
    let metrics = Metrics::new(20);
    let records: Vec<SchoolRecord> = (1..=SCHOOLS)
        .map(|i| SchoolRecord {
            id: i,
            name: format!("School number {i}"),
            database: format!("district_school_{i:06}"),
            slug: format!("district-school-{i:06}"),
            status: "active".parse(),
            db_version: 1,
            last_error: None,
            provision_attempts: 0,
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    let (snapshot, _) = Snapshot::build(&records, &Snapshot::empty(), &settings, "catalog", &|s| {
        metrics.school_counter(s)
    });
    let built = LIVE.load(Ordering::Relaxed);
    // One change: what a second snapshot sharing all the rest adds.
    let mut changed = records[SCHOOLS as usize / 2].clone();
    changed.status = "suspended".parse();
    let named = [changed.database.clone()];
    let (next, _) = snapshot
        .update(&named, &[changed], &settings, "catalog", &|s| {
            metrics.school_counter(s)
        })
        .expect("no conflict");
    let updated = LIVE.load(Ordering::Relaxed);
    let per_school = (built - before) as f64 / f64::from(SCHOOLS);
    println!(
        "snapshot of {SCHOOLS} schools: {:.1} MiB live after the build, {per_school:.0} bytes per school \
         (names of 15-22 bytes; includes the metrics' per-school counter entry)",
        (built - before) as f64 / (1024.0 * 1024.0)
    );
    println!(
        "one incremental update beside it: {} bytes more while both snapshots live",
        updated - built
    );
    drop((next, snapshot, records));
}
