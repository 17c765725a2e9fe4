//! The published-menu cache (OPERATIONS.md, "The published-menu cache"), end to end: two
//! in-process replicas on one catalog, writes through one, public reads through the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};
use tenant_edge::control::menu_notify;
use tenant_edge::domain::status::SchoolStatus;
use tenant_edge::serve::{start, Running};

use crate::server::*;
use crate::support::*;

/// The spec's bound on how long another replica may serve a menu after a write.
const ACROSS_REPLICAS: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

/// One more replica on a test server's catalog (the server owns the databases).
struct Replica {
    running: Option<Running>,
    base: String,
    admin: String,
}

impl Replica {
    /// A replica with one worker thread: each worker has its own shard, so with one, a
    /// test knows which requests share the cache. `cache` is the `[cache]` section.
    async fn start(scratch: &Scratch, cache: &str) -> Self {
        Self::start_with(scratch, "[server]\nworker_threads = 1\n", cache).await
    }

    async fn start_with(scratch: &Scratch, extra: &str, cache: &str) -> Self {
        let text = format!("{}\n[cache]\n{cache}\n", config_text(scratch, extra));
        let path = scratch.dir.join(format!("replica-{}.toml", now_nanos()));
        std::fs::write(&path, &text).unwrap();
        let config = tenant_edge::config::from_str(&text, &path, &|_| None).expect("config");
        let running = start(config).await.expect("replica starts");
        wait_for(
            "the replica to be ready",
            Duration::from_secs(20),
            || async {
                let ready = running.app.readiness();
                matches!(ready, tenant_edge::state::Readiness::Ready).then_some(())
            },
        )
        .await;
        Self {
            base: format!("http://{}", running.address),
            admin: format!("http://{}", running.admin_address.unwrap()),
            running: Some(running),
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Waits until every school is active here and the cache is live.
    async fn wait_serving(&self, databases: &[&str]) {
        wait_for("the replica to serve", Duration::from_secs(30), || async {
            let _ = self.running().refresh().await;
            let app = &self.running().app;
            let snapshot = app.snapshot.load();
            let active = databases.iter().all(|d| {
                snapshot
                    .by_database(d)
                    .is_some_and(|t| t.status == SchoolStatus::Active)
            });
            (active && app.menu_cache.is_live()).then_some(())
        })
        .await;
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            for tenant in running.app.snapshot.load().tenants() {
                tenant.pool.close();
            }
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A test server with a `[cache]` section, and its own replica handle.
async fn first_replica(cache: &str) -> (TestServer, Replica) {
    first_replica_with("[server]\nworker_threads = 1\n", cache).await
}

async fn first_replica_with(extra: &str, cache: &str) -> (TestServer, Replica) {
    let scratch = Scratch::new();
    let replica = Replica::start_with(&scratch, extra, cache).await;
    let server = TestServer {
        running: None,
        base: replica.base.clone(),
        admin: Some(replica.admin.clone()),
        client: http_client(),
        scratch,
    };
    (server, replica)
}

/// Adds schools to the catalog and waits until every replica serves them.
async fn add_schools(server: &TestServer, replicas: &[&Replica], databases: &[&str]) {
    let rows: Vec<(&str, &str)> = databases.iter().map(|d| ("School", *d)).collect();
    server.scratch.insert_schools(&rows).await;
    for replica in replicas {
        replica.wait_serving(databases).await;
    }
}

/// `GET` of the public week on `base`: status and JSON body.
async fn public(server: &TestServer, base: &str, database: &str, week: &str) -> (u16, Value) {
    let slug = database.replace('_', "-");
    let path = format!("/api/lunch-week-public/{slug}/{week}");
    let (status, _, body) = server.request_to(base, Method::GET, &path, &[], None).await;
    (status, parse(&body))
}

/// Polls the public week on `base` every 50 ms until `expected` holds; returns how long it
/// took, failing after [`ACROSS_REPLICAS`].
async fn seen_within(
    server: &TestServer,
    base: &str,
    database: &str,
    what: &str,
    expected: impl Fn(u16, &Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = public(server, base, database, "2020-01-06").await;
        if expected(status, &body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ACROSS_REPLICAS,
            "{what}: still {status} {body} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Creates a week of `week_of` (published or not) with one day on its Monday whose menu
/// is `menu`, through the API as the school's staff; returns the week's id.
async fn week_with_menu(
    server: &TestServer,
    token: &str,
    week_of: &str,
    published: bool,
    menu: &str,
) -> i64 {
    let (status, week) = server
        .call(
            token,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": week_of, "isPublished": published})),
        )
        .await;
    assert_eq!(status, 200, "{week}");
    let id = week["lunchWeekId"].as_i64().unwrap();
    let (status, day) = server
        .call(
            token,
            Method::POST,
            &format!("/api/lunch-week/{id}/lunch-day"),
            Some(json!({"day": week_of, "menuDetails": menu})),
        )
        .await;
    assert_eq!(status, 200, "{day}");
    id
}

fn menu_of(body: &Value) -> Option<&str> {
    body["lunchDays"][0]["menuDetails"].as_str()
}

/// A metric's value from the admin listener's /metrics.
async fn metric(server: &TestServer, admin: &str, name: &str) -> f64 {
    let (_, _, body) = server
        .request_to(admin, Method::GET, "/metrics", &[], None)
        .await;
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_write_through_one_replica_is_on_the_other_within_a_second() {
    let (server, a) = first_replica("").await;
    let b = Replica::start(&server.scratch, "").await;
    let school = server.scratch.db("menus");
    add_schools(&server, &[&a, &b], &[&school]).await;
    let token = token_for(&school);

    // An unpublished week: both replicas cache the 404.
    let (_, created) = server
        .call(
            &token,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-01-06", "isPublished": false})),
        )
        .await;
    let week_id = created["lunchWeekId"].as_i64().unwrap();
    let week_path = format!("/api/lunch-week/{week_id}");
    // (The creation's notification may still be on its way to B: poll until B hits.)
    for replica in [&a, &b] {
        wait_for("an answer from memory", ACROSS_REPLICAS * 2, || async {
            let (status, _) = public(&server, &replica.base, &school, "2020-01-06").await;
            assert_eq!(status, 404);
            (replica.running().app.menu_cache.stats().hits >= 1).then_some(())
        })
        .await;
    }

    let mut delays = Vec::new();
    // Publish through A: A answers the new menu at once, B within a second.
    let publish = json!({"lunchWeekId": week_id, "weekOf": "2020-01-06", "isPublished": true});
    let (status, _) = server
        .call(&token, Method::PUT, &week_path, Some(publish.clone()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(public(&server, &a.base, &school, "2020-01-06").await.0, 200);
    delays.push(seen_within(&server, &b.base, &school, "publish", |s, _| s == 200).await);

    // A day added, then edited, through A.
    let day_path = format!("{week_path}/lunch-day");
    let (_, day) = server
        .call(
            &token,
            Method::POST,
            &day_path,
            Some(json!({"day": "2020-01-06", "menuDetails": "Tacos"})),
        )
        .await;
    let day_id = day["lunchDayId"].as_i64().unwrap();
    let menu = |s: u16, body: &Value, text: &str| s == 200 && menu_of(body) == Some(text);
    assert!(menu(
        200,
        &public(&server, &a.base, &school, "2020-01-06").await.1,
        "Tacos"
    ));
    delays.push(
        seen_within(&server, &b.base, &school, "new day", |s, b| {
            menu(s, b, "Tacos")
        })
        .await,
    );
    let (status, _) = server
        .call(
            &token,
            Method::PUT,
            &format!("{day_path}/{day_id}"),
            Some(json!({"lunchDayId": day_id, "lunchWeekId": week_id, "day": "2020-01-06", "menuDetails": "Pizza"})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(menu(
        200,
        &public(&server, &a.base, &school, "2020-01-06").await.1,
        "Pizza"
    ));
    delays.push(
        seen_within(&server, &b.base, &school, "day edit", |s, b| {
            menu(s, b, "Pizza")
        })
        .await,
    );

    // Unpublish through A.
    let unpublish = json!({"lunchWeekId": week_id, "weekOf": "2020-01-06", "isPublished": false});
    server
        .call(&token, Method::PUT, &week_path, Some(unpublish))
        .await;
    assert_eq!(public(&server, &a.base, &school, "2020-01-06").await.0, 404);
    delays.push(seen_within(&server, &b.base, &school, "unpublish", |s, _| s == 404).await);
    eprintln!("seen on the other replica after {delays:?}");

    let stats = b.running().app.menu_cache.stats();
    assert!(stats.invalidations_remote >= 4, "{stats:?}");
    assert!(metric(&server, &b.admin, "menu_cache_hits_total").await >= 1.0);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn no_school_is_ever_answered_under_another_schools_slug() {
    // Two workers, each with its shard, and misses racing across them.
    let (server, a) = first_replica_with("[server]\nworker_threads = 2\n", "").await;
    let schools: Vec<String> = (0..8)
        .map(|i| server.scratch.db(&format!("s{i}")))
        .collect();
    let names: Vec<&str> = schools.iter().map(String::as_str).collect();
    add_schools(&server, &[&a], &names).await;
    // Each school publishes a week whose menu names the school; odd ones only a 404.
    for (i, school) in schools.iter().enumerate() {
        let token = token_for(school);
        week_with_menu(&server, &token, "2020-01-06", i % 2 == 0, school).await;
    }
    let server = Arc::new(server);
    let schools = Arc::new(schools);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (server, schools, base) = (server.clone(), schools.clone(), a.base.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..200 {
                let i = (task + n) % schools.len();
                let (status, body) = public(&server, &base, &schools[i], "2020-01-06").await;
                if i % 2 == 0 {
                    assert_eq!(status, 200, "{}: {body}", schools[i]);
                    assert_eq!(menu_of(&body), Some(schools[i].as_str()), "{body}");
                } else {
                    assert_eq!(status, 404, "{}: {body}", schools[i]);
                }
            }
        }));
    }
    // Alongside, the schools' entries keep being dropped, so misses run concurrently too.
    let app = a.running().app.clone();
    let schools_for_drops = schools.clone();
    let dropper = tokio::spawn(async move {
        for n in 0..200 {
            let school = &schools_for_drops[n % schools_for_drops.len()];
            app.menu_cache
                .drop_school(school, tenant_edge::lunch::menu_cache::Origin::Local);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    for task in tasks {
        task.await.unwrap();
    }
    dropper.await.unwrap();
    let stats = a.running().app.menu_cache.stats();
    assert!(stats.hits > 1000 && stats.misses >= 8, "{stats:?}");
    a.stop().await;
}

#[tokio::test]
async fn a_replica_whose_notification_connection_is_cut_serves_from_the_database() {
    let (server, a) = first_replica("").await;
    let school = server.scratch.db("cut");
    add_schools(&server, &[&a], &[&school]).await;
    let token = token_for(&school);
    let id = week_with_menu(&server, &token, "2020-01-06", true, "Old").await;
    let (_, body) = public(&server, &a.base, &school, "2020-01-06").await;
    assert_eq!(menu_of(&body), Some("Old"));

    // A write outside tenant-edge: the public answer is cached, the authenticated read not.
    let db = connect(&school).await;
    let outside = |text: &'static str| {
        let db = &db;
        async move {
            db.execute("update lunch_day set menu_details = $1", &[&text])
                .await
                .unwrap();
        }
    };
    outside("New").await;
    assert_eq!(
        menu_of(&public(&server, &a.base, &school, "2020-01-06").await.1),
        Some("Old")
    );
    let (_, days) = server
        .call(
            &token,
            Method::GET,
            &format!("/api/lunch-week/{id}/lunch-day"),
            None,
        )
        .await;
    assert_eq!(days[0]["menuDetails"], "New");

    // The admin API drops the school's entries (and refuses what it should).
    let admin = server.admin.clone().unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let drop_path = format!("/admin/schools/{school}/cache");
    let (status, _, _) = server
        .request_to(&admin, Method::DELETE, &drop_path, &[], None)
        .await;
    assert_eq!(status, 401);
    let (status, _, body) = server
        .request_to(
            &admin,
            Method::DELETE,
            "/admin/schools/nope/cache",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        (status, parse(&body)["code"].as_str()),
        (404, Some("school_not_found"))
    );
    let (status, _, _) = server
        .request_to(
            &admin,
            Method::DELETE,
            &drop_path,
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        menu_of(&public(&server, &a.base, &school, "2020-01-06").await.1),
        Some("New")
    );

    // Cached again; then the notification connection is cut.
    outside("Newer").await;
    assert_eq!(
        menu_of(&public(&server, &a.base, &school, "2020-01-06").await.1),
        Some("New")
    );
    let admin_db = connect("postgres").await;
    let cut: i64 = admin_db
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where datname = $1 and application_name = $2",
            &[&server.scratch.catalog(), &menu_notify::APPLICATION_NAME],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 1);
    // From the database while it is down, cleared once it is back: fresh either way.
    wait_for("the fresh menu", Duration::from_secs(5), || async {
        let (_, body) = public(&server, &a.base, &school, "2020-01-06").await;
        (menu_of(&body) == Some("Newer")).then_some(())
    })
    .await;
    // And the cache is live again once the connection is back.
    wait_for(
        "the cache to be live again",
        Duration::from_secs(10),
        || async { a.running().app.menu_cache.is_live().then_some(()) },
    )
    .await;
    a.stop().await;
}

#[tokio::test]
async fn memory_stays_within_max_bytes_with_more_weeks_than_fit() {
    let (server, a) = first_replica("max_bytes = \"16KiB\"").await;
    let school = server.scratch.db("big");
    add_schools(&server, &[&a], &[&school]).await;
    let token = token_for(&school);
    let details = "x".repeat(1000);
    let mondays: Vec<String> = (0..40)
        .map(|n| {
            let date = tenant_edge::domain::date::Date::parse("2020-01-06").unwrap();
            let monday =
                tenant_edge::domain::date::Date::from_unix_days(date.to_unix_days() + 7 * n);
            monday.unwrap().to_string()
        })
        .collect();
    for monday in &mondays {
        week_with_menu(&server, &token, monday, true, &details).await;
    }
    let max = metric(&server, &a.admin, "menu_cache_max_bytes").await;
    assert_eq!(max, 16384.0);
    for _ in 0..2 {
        for monday in &mondays {
            let (status, body) = public(&server, &a.base, &school, monday).await;
            assert_eq!((status, menu_of(&body)), (200, Some(details.as_str())));
            let bytes = metric(&server, &a.admin, "menu_cache_bytes").await;
            assert!(bytes <= max, "{bytes} > {max}");
        }
    }
    let entries = metric(&server, &a.admin, "menu_cache_entries").await;
    assert!(entries > 0.0 && entries < 40.0, "{entries}");
    a.stop().await;
}

#[tokio::test]
async fn a_suspended_school_comes_back_without_its_old_menus() {
    let (server, a) = first_replica("").await;
    let school = server.scratch.db("paused");
    add_schools(&server, &[&a], &[&school]).await;
    let token = token_for(&school);
    week_with_menu(&server, &token, "2020-01-06", true, "Old").await;
    assert_eq!(
        menu_of(&public(&server, &a.base, &school, "2020-01-06").await.1),
        Some("Old")
    );
    // From memory, If-None-Match and HEAD answer as from the database.
    let path = format!(
        "/api/lunch-week-public/{}/2020-01-06",
        school.replace('_', "-")
    );
    let hits = a.running().app.menu_cache.stats().hits;
    let (_, headers, body) = server
        .request_to(&a.base, Method::GET, &path, &[], None)
        .await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, headers, empty) = server
        .request_to(
            &a.base,
            Method::GET,
            &path,
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(
        (status, headers["etag"].to_str().unwrap(), empty.len()),
        (304, etag.as_str(), 0)
    );
    let (status, headers, empty) = server
        .request_to(&a.base, Method::HEAD, &path, &[], None)
        .await;
    assert_eq!(
        (status, headers["etag"].to_str().unwrap(), empty.len()),
        (200, etag.as_str(), 0)
    );
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    assert_eq!(a.running().app.menu_cache.stats().hits, hits + 3);

    // Changed outside tenant-edge while the school is suspended, then resumed.
    connect(&school)
        .await
        .execute("update lunch_day set menu_details = 'New'", &[])
        .await
        .unwrap();
    let admin = server.admin.clone().unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for action in ["suspend", "resume"] {
        let path = format!("/admin/schools/{school}/{action}");
        let (status, _, _) = server
            .request_to(
                &admin,
                Method::POST,
                &path,
                &[("authorization", &auth)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{action}");
    }
    a.wait_serving(&[&school]).await;
    assert_eq!(
        menu_of(&public(&server, &a.base, &school, "2020-01-06").await.1),
        Some("New")
    );
    a.stop().await;
}
