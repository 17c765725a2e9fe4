//! Micro-benchmarks of the per-request work tenant-edge does besides waiting on
//! PostgreSQL: routing, the bearer token check (first sight and cached), the catalog
//! snapshot lookup (against a std `HashMap`), and the JSON encoding of a week with its
//! days; and of the control path's catalog work at 1,000 to 100,000 schools: a full
//! build and one incremental update.
//!
//!     cargo bench --bench hot_path
//!
//! The load test against pgbench is `bench/run.sh`; see BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use tenant_edge::auth::Authenticator;
use tenant_edge::config::{self, Config};
use tenant_edge::domain::date::Date;
use tenant_edge::domain::names::Slug;
use tenant_edge::lunch::json::WriteJson;
use tenant_edge::lunch::model::{Day, Week, WeekWithDays};
use tenant_edge::lunch::queries::STATEMENTS;
use tenant_edge::lunch::router;
use tenant_edge::pool::{Budget, PoolSettings};
use tenant_edge::telemetry::metrics::Metrics;
use tenant_edge::tenancy::snapshot::{Snapshot, Tenant};
use tenant_edge::tenancy::store::SchoolRecord;

const TENANT_CLAIM: &str = "https://school-lunch/school_database";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The bench configuration: RS256 through the fixture JWKS, the given cache capacity.
fn config(token_cache_capacity: usize) -> Config {
    let text = format!(
        "[auth]\nalgorithms = [\"RS256\"]\njwks_file = \"{}\"\ntoken_cache_capacity = {token_cache_capacity}\n",
        fixture("jwks_a.json")
    );
    config::from_str(&text, Path::new("bench.toml"), &|_| None).expect("valid bench config")
}

/// An RS256 token for `school`, signed with the fixture key `key-a`.
fn token(config: &Config, school: &str) -> String {
    let pem = std::fs::read(fixture("rsa_a.pem")).expect("fixture key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = Map::new();
    claims.insert("iss".into(), config.auth.issuer.as_str().into());
    claims.insert("aud".into(), config.auth.audience.as_str().into());
    claims.insert("exp".into(), (now + 3600).into());
    claims.insert(TENANT_CLAIM.into(), school.into());
    encode(&header, &Value::Object(claims), &key).expect("signing")
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    for (name, method, path) in [
        ("list_weeks", Method::GET, "/api/lunch-week"),
        ("get_week", Method::GET, "/api/lunch-week/17"),
        (
            "public_week",
            Method::GET,
            "/api/lunch-week-public/pinewood-elementary/2020-11-16",
        ),
        ("update_day", Method::PUT, "/api/lunch-week/17/lunch-day/85"),
        ("not_found", Method::GET, "/api/nothing-here"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let routed = router::route(black_box(&method), black_box(path));
                black_box(routed.is_ok())
            })
        });
    }
    group.finish();
}

fn token_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_check");
    let uncached = config(0);
    let token = token(&uncached, "pinewood_elementary");
    let header = format!("Bearer {token}");

    // First sight: the cache is off, so every call is a full RS256 verification.
    let verifier = Authenticator::new(&uncached.auth).expect("authenticator");
    group.bench_function("first_sight_rs256", |b| {
        b.iter(|| {
            let principal = verifier
                .authenticate(Some(black_box(header.as_bytes())))
                .now_or_never()
                .expect("no key fetch needed")
                .expect("valid token");
            black_box(principal)
        })
    });

    // Cached: the token was verified once; later requests are a cache lookup.
    let cached = Authenticator::new(&config(10_000).auth).expect("authenticator");
    cached
        .authenticate(Some(header.as_bytes()))
        .now_or_never()
        .unwrap()
        .unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            let principal = cached
                .authenticate(Some(black_box(header.as_bytes())))
                .now_or_never()
                .expect("no key fetch needed")
                .expect("valid token");
            black_box(principal)
        })
    });
    group.finish();
}

fn pool_settings() -> Arc<PoolSettings> {
    let config = config(0);
    Arc::new(PoolSettings::new(
        &config.tenants,
        Budget::new(80),
        1,
        &STATEMENTS,
    ))
}

/// `count` active schools, `school_000001`, ... with slugs `school-000001`, ...
fn records(count: i32) -> Vec<SchoolRecord> {
    (1..=count)
        .map(|i| SchoolRecord {
            id: i,
            name: format!("School {i}"),
            database: format!("school_{i:06}"),
            slug: format!("school-{i:06}"),
            status: "active".parse(),
            db_version: 1,
            last_error: None,
            provision_attempts: 0,
        })
        .collect()
}

fn build(records: &[SchoolRecord], previous: &Snapshot, metrics: &Metrics) -> Snapshot {
    let (snapshot, rejected) =
        Snapshot::build(records, previous, &pool_settings(), "catalog", &|school| {
            metrics.school_counter(school)
        });
    assert!(rejected.is_empty());
    snapshot
}

/// What a request does with the snapshot: one ArcSwap load, one lookup. Beside it, the
/// same lookup in std `HashMap`s of the same tenants (what the snapshot held before it
/// became persistent).
fn snapshot_lookup(c: &mut Criterion) {
    let metrics = Metrics::new(20);
    for count in [300, 10_000] {
        let snapshot = build(&records(count), &Snapshot::empty(), &metrics);
        let std_by_database: HashMap<Arc<str>, Arc<Tenant>> = snapshot
            .tenants()
            .map(|t| (t.database.clone(), t.clone()))
            .collect();
        let std_by_slug: HashMap<Box<str>, Arc<Tenant>> = snapshot
            .tenants()
            .map(|t| ((*t.slug).into(), t.clone()))
            .collect();
        let swap = arc_swap::ArcSwap::from_pointee(snapshot);
        let std_swap = arc_swap::ArcSwap::from_pointee((std_by_database, std_by_slug));
        let (database, slug) = (
            format!("school_{:06}", count / 2),
            format!("school-{:06}", count / 2),
        );
        let slug = Slug::parse(&slug).unwrap();

        let mut group = c.benchmark_group(format!("snapshot_lookup_{count}_schools"));
        group.bench_function("by_database", |b| {
            b.iter(|| {
                let snapshot = swap.load();
                let tenant = snapshot.by_database(black_box(&database)).cloned();
                black_box(tenant.is_some())
            })
        });
        group.bench_function("by_slug", |b| {
            b.iter(|| {
                let snapshot = swap.load();
                let tenant = snapshot.by_slug(black_box(slug)).cloned();
                black_box(tenant.is_some())
            })
        });
        group.bench_function("by_database_std_hashmap", |b| {
            b.iter(|| {
                let maps = std_swap.load();
                let tenant = maps.0.get(black_box(database.as_str())).cloned();
                black_box(tenant.is_some())
            })
        });
        group.bench_function("by_slug_std_hashmap", |b| {
            b.iter(|| {
                let maps = std_swap.load();
                let tenant = maps.1.get(black_box(slug.as_str())).cloned();
                black_box(tenant.is_some())
            })
        });
        group.finish();
    }
}

/// The control path's catalog work: a full build from every row (the steady state: every
/// school already has its pool, as at each timer refresh), and one school changed by an
/// incremental update (what a notification or a provisioning result costs).
fn catalog_at_scale(c: &mut Criterion) {
    let metrics = Metrics::new(20);
    let settings = pool_settings();
    let mut group = c.benchmark_group("catalog");
    group.sample_size(10);
    for count in [1_000, 10_000, 100_000] {
        let rows = records(count);
        let current = build(&rows, &Snapshot::empty(), &metrics);
        group.bench_function(format!("full_build_{count}"), |b| {
            b.iter(|| black_box(build(black_box(&rows), &current, &metrics).len()))
        });
        let mut changed = rows[rows.len() / 2].clone();
        changed.status = "suspended".parse();
        let named = [changed.database.clone()];
        let read = [changed];
        group.bench_function(format!("update_one_{count}"), |b| {
            b.iter(|| {
                let (next, _) = current
                    .update(&named, black_box(&read), &settings, "catalog", &|school| {
                        metrics.school_counter(school)
                    })
                    .unwrap();
                black_box(next.len())
            })
        });
        // A new school: also creates its pool and counter.
        let new = records(count + 1).pop().unwrap();
        let named = [new.database.clone()];
        let read = [new];
        group.bench_function(format!("update_add_{count}"), |b| {
            b.iter(|| {
                let (next, _) = current
                    .update(&named, black_box(&read), &settings, "catalog", &|school| {
                        metrics.school_counter(school)
                    })
                    .unwrap();
                black_box(next.len())
            })
        });
    }
    group.finish();
}

/// The seeded week of bench/run.sh: five days, each with a ~200-character menu.
fn week_with_days() -> WeekWithDays {
    let monday = Date::parse("2020-01-06").unwrap();
    let menu = "Mon 06 Jan: baked chicken with brown rice, steamed green beans, whole-grain roll, \
                fresh apple slices, low-fat milk; baked chicken with brown rice, steamed green \
                beans, whole-grain roll, fresh apple slic";
    WeekWithDays {
        week: Week {
            lunch_week_id: 1,
            week_of: monday,
            is_published: true,
        },
        lunch_days: (0..5)
            .map(|d| Day {
                lunch_day_id: 1 + d,
                lunch_week_id: 1,
                day: Date::from_unix_days(monday.to_unix_days() + i64::from(d)).unwrap(),
                menu_details: Some(menu.to_string()),
            })
            .collect(),
    }
}

fn json_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    let week = week_with_days();
    // What the server writes (src/lunch/json.rs), and serde_json's derive beside it.
    group.bench_function("week_with_5_days", |b| {
        b.iter(|| black_box(black_box(&week).to_json()))
    });
    group.bench_function("week_with_5_days_serde", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&week)).unwrap()))
    });
    let weeks: Vec<Week> = (0..52)
        .map(|i| Week {
            lunch_week_id: i + 1,
            week_of: Date::from_unix_days(18_267 + 7 * i64::from(i)).unwrap(),
            is_published: i % 2 == 0,
        })
        .collect();
    group.bench_function("list_of_52_weeks", |b| {
        b.iter(|| black_box(black_box(&weeks).to_json()))
    });
    group.bench_function("list_of_52_weeks_serde", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&weeks)).unwrap()))
    });
    group.finish();
}

criterion_group!(
    benches,
    routing,
    token_check,
    snapshot_lookup,
    catalog_at_scale,
    json_encoding
);
criterion_main!(benches);
