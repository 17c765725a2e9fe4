//! Micro-benchmarks of the per-request work tenant-edge does besides waiting on
//! PostgreSQL: routing, the bearer token check (first sight and cached), the catalog
//! snapshot lookup, and the JSON encoding of a week with its days.
//!
//!     cargo bench --bench hot_path
//!
//! The load test against pgbench is `bench/run.sh`; see BENCHMARKS.md.

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
use tenant_edge::tenancy::snapshot::Snapshot;
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

fn snapshot_lookup(c: &mut Criterion) {
    let config = config(0);
    let settings = Arc::new(PoolSettings::new(
        &config.tenants,
        Budget::new(80),
        1,
        &STATEMENTS,
    ));
    let records: Vec<SchoolRecord> = (1..=300)
        .map(|i| SchoolRecord {
            id: i,
            name: format!("School {i}"),
            database: format!("school_{i:03}"),
            slug: format!("school-{i:03}"),
            status: "active".parse(),
            db_version: 1,
            last_error: None,
            provision_attempts: 0,
        })
        .collect();
    let metrics = Metrics::new(20);
    let (snapshot, rejected) = Snapshot::build(
        &records,
        &Snapshot::empty(),
        &settings,
        "catalog",
        &|school| metrics.school_counter(school),
    );
    assert!(rejected.is_empty());
    let swap = arc_swap::ArcSwap::from_pointee(snapshot);

    let mut group = c.benchmark_group("snapshot_lookup_300_schools");
    group.bench_function("by_database", |b| {
        b.iter(|| {
            let snapshot = swap.load();
            let tenant = snapshot.by_database(black_box("school_150")).cloned();
            black_box(tenant.is_some())
        })
    });
    group.bench_function("by_slug", |b| {
        let slug = Slug::parse("school-150").unwrap();
        b.iter(|| {
            let snapshot = swap.load();
            let tenant = snapshot.by_slug(black_box(slug)).cloned();
            black_box(tenant.is_some())
        })
    });
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
    json_encoding
);
criterion_main!(benches);
