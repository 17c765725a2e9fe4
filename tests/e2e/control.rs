//! The control path: live catalog changes, SIGHUP, several replicas, pool reuse, the
//! connection budget, catalog outages, configuration reloads and provisioning failures.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};

use crate::process::*;
use crate::server::*;
use crate::support::*;

async fn backend_pids(database: &str) -> Vec<i32> {
    let admin = connect("postgres").await;
    let mut pids: Vec<i32> = admin
        .query(
            "select pid from pg_stat_activity where datname = $1 and application_name = 'tenant-edge'",
            &[&database],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    pids.sort();
    pids
}

#[tokio::test]
async fn catalog_changes_apply_live_through_notifications() {
    // A long refresh interval: only notifications can make these changes visible.
    let server = TestServer::start("[catalog]\nrefresh_interval = \"1h\"\n").await;
    let school = server.scratch.db("live");
    let token = token_for(&school);
    assert_eq!(server.weeks_status(&token).await, 403);

    // `tenants add` provisions at once; the server learns of it by notification.
    let config = server.scratch.dir.join("proxy.toml");
    let output = server.scratch.run(
        &config,
        &["tenants", "add", "--name", "Live", "--database", &school],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let added = Instant::now();
    wait_for(
        "the new school to be served",
        Duration::from_secs(2),
        || async { (server.weeks_status(&token).await == 200).then_some(()) },
    )
    .await;
    eprintln!(
        "new school served {:?} after `tenants add` returned",
        added.elapsed()
    );

    let catalog = connect(&server.scratch.catalog()).await;
    catalog
        .execute(
            "update schools set school_name = 'Renamed' where school_database = $1",
            &[&school],
        )
        .await
        .unwrap();
    wait_for("the new name", Duration::from_secs(2), || async {
        let snapshot = server.running().app.snapshot.load();
        (snapshot.by_database(&school)?.name == "Renamed").then_some(())
    })
    .await;

    let slug = school.replace('_', "-");
    catalog
        .execute(
            "update schools set status = 'suspended' where school_database = $1",
            &[&school],
        )
        .await
        .unwrap();
    server
        .wait_weeks_status(&token, 403, "the suspension", Duration::from_secs(2))
        .await;
    let (status, _, _) = server
        .request(
            Method::GET,
            &format!("/api/lunch-week-public/{slug}/2020-01-06"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 404, "a suspended school's public slug is not found");

    catalog
        .execute(
            "update schools set status = 'active' where school_database = $1",
            &[&school],
        )
        .await
        .unwrap();
    server
        .wait_weeks_status(&token, 200, "the resumption", Duration::from_secs(2))
        .await;
    assert!(!backend_pids(&school).await.is_empty());

    catalog
        .execute("delete from schools where school_database = $1", &[&school])
        .await
        .unwrap();
    server
        .wait_weeks_status(&token, 403, "the removal", Duration::from_secs(2))
        .await;
    // Its pool is drained: the idle connections close.
    wait_for(
        "the removed school's connections to close",
        Duration::from_secs(5),
        || async { backend_pids(&school).await.is_empty().then_some(()) },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn without_notifications_sighup_reloads_the_catalog() {
    let scratch = Scratch::new();
    let process = ServerProcess::start(
        &scratch,
        "proxy.toml",
        "[catalog]\nnotifications = false\nrefresh_interval = \"1h\"\n",
    )
    .await;
    let school = scratch.db("hup");
    let output = scratch.run(
        &process.config,
        &["tenants", "add", "--name", "Hup", "--database", &school],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let client = http_client();
    let token = token_for(&school);
    assert_eq!(
        lunch_weeks_status(&client, &process.base, &token).await,
        403,
        "not seen without a reload"
    );
    process.signal("HUP");
    wait_for(
        "the school after SIGHUP",
        Duration::from_secs(2),
        || async {
            (lunch_weeks_status(&client, &process.base, &token).await == 200).then_some(())
        },
    )
    .await;
    assert_eq!(process.terminate(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn two_replicas_provision_twenty_new_schools_once() {
    let scratch = Scratch::new();
    let first =
        ServerProcess::start(&scratch, "a.toml", "[tenants]\nprovision_concurrency = 2\n").await;
    let second =
        ServerProcess::start(&scratch, "b.toml", "[tenants]\nprovision_concurrency = 2\n").await;
    let schools: Vec<String> = (0..20).map(|i| scratch.db(&format!("r{i}"))).collect();
    // All at once, in one statement.
    let catalog = connect(&scratch.catalog()).await;
    catalog
        .execute(
            "insert into schools (school_name, school_database) select 'Replica', unnest($1::text[])",
            &[&schools],
        )
        .await
        .unwrap();
    let client = http_client();
    for process in [&first, &second] {
        for school in &schools {
            let token = token_for(school);
            wait_for(
                "every school served by both replicas",
                Duration::from_secs(60),
                || async {
                    (lunch_weeks_status(&client, &process.base, &token).await == 200).then_some(())
                },
            )
            .await;
        }
    }
    for school in &schools {
        let rows: i64 = connect(school)
            .await
            .query_one("select count(*) from tenant_edge_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "{school}: each migration applied once");
    }
    // Each school was provisioned without a failed attempt: a replica that migrated a
    // school while the other did (no migration lock) fails on the table that already
    // exists, and its retry would hide that from every check above.
    let rows = catalog
        .query(
            "select school_database, status, last_error, provision_attempts from schools",
            &[],
        )
        .await
        .unwrap();
    for row in &rows {
        let (database, status): (String, String) = (row.get(0), row.get(1));
        let (error, attempts): (Option<String>, i32) = (row.get(2), row.get(3));
        assert_eq!(status, "active", "{database}");
        assert_eq!(error, None, "{database}");
        assert_eq!(attempts, 0, "{database}: failed provisioning attempts");
    }
    let mut first = first;
    let mut second = second;
    for (name, process) in [("first", &mut first), ("second", &mut second)] {
        while let Ok(line) = process.process.stderr.try_recv() {
            assert!(
                !line.contains("provisioning failed"),
                "{name} replica: {line}"
            );
        }
    }
    assert_eq!(first.terminate(Duration::from_secs(10)).await, 0);
    assert_eq!(second.terminate(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn pools_of_unchanged_schools_survive_a_refresh() {
    let server = TestServer::start("").await;
    let kept = server.scratch.db("kept");
    server.add_schools(&[&kept]).await;
    let token = token_for(&kept);
    // Several concurrent requests open a few connections.
    let calls: Vec<_> = (0..8)
        .map(|_| server.call(&token, Method::GET, "/api/lunch-week", None))
        .collect();
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let before = backend_pids(&kept).await;
    assert!(!before.is_empty());
    let generation = server.running().app.snapshot.load().generation;

    // Another school arrives and the catalog is refreshed a few times.
    let other = server.scratch.db("other");
    server.add_schools(&[&other]).await;
    for _ in 0..3 {
        server.running().refresh().await.unwrap();
    }
    assert!(server.running().app.snapshot.load().generation > generation);
    assert_eq!(server.weeks_status(&token).await, 200);
    assert_eq!(
        backend_pids(&kept).await,
        before,
        "same backend PIDs before and after"
    );
    server.stop().await;
}

#[tokio::test]
async fn forty_schools_share_a_budget_of_ten_connections() {
    let server =
        TestServer::start("[tenants]\nmax_total_connections = 10\nacquire_timeout = \"3s\"\n")
            .await;
    let schools: Vec<String> = (0..40)
        .map(|i| server.scratch.db(&format!("b{i}")))
        .collect();
    let names: Vec<&str> = schools.iter().map(String::as_str).collect();
    server.add_schools(&names).await;

    let prefix = server.scratch.prefix.clone();
    let catalog = server.scratch.catalog();
    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            let admin = connect("postgres").await;
            while !done.load(Ordering::Relaxed) {
                let count: i64 = admin
                    .query_one(
                        "select count(*) from pg_stat_activity where starts_with(datname, $1) and datname <> $2 and application_name = 'tenant-edge'",
                        &[&prefix, &catalog],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(count, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let tokens: Vec<String> = schools.iter().map(|s| token_for(s)).collect();
    use futures_util::StreamExt;
    let answers: Vec<(u16, Value)> = futures_util::stream::iter((0..240).map(|i| {
        let token = tokens[i % tokens.len()].clone();
        let server = &server;
        async move {
            server
                .call(&token, Method::GET, "/api/lunch-week", None)
                .await
        }
    }))
    .buffered(6)
    .collect()
    .await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    // The bodies too: a 503's code says which wait ran out.
    let failures: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        answers.len()
    );
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("peak connections to school databases: {peak} (budget 10, 40 schools)");
    assert!(peak <= 10, "peak of {peak} connections to school databases");
    assert!(server.running().app.budget.in_use() <= 10);
    server.stop().await;
}

#[tokio::test]
async fn a_catalog_outage_keeps_serving_from_the_snapshot() {
    let server = TestServer::start("[catalog]\nrefresh_interval = \"200ms\"\n").await;
    let school = server.scratch.db("steady");
    server.add_schools(&[&school]).await;
    let token = token_for(&school);
    let catalog = server.scratch.catalog();
    let admin = connect("postgres").await;
    // Cut the catalog off: no new connections, existing ones terminated.
    admin
        .batch_execute(&format!("alter database {catalog} allow_connections false"))
        .await
        .unwrap();
    admin
        .execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
            &[&catalog],
        )
        .await
        .unwrap();
    // Refreshes fail now...
    wait_for("a failing refresh", Duration::from_secs(5), || async {
        server.running().refresh().await.is_err().then_some(())
    })
    .await;
    // ...yet requests are served from the snapshot and the server stays ready.
    for _ in 0..5 {
        assert_eq!(server.weeks_status(&token).await, 200);
    }
    assert_eq!(
        server.request(Method::GET, "/readyz", &[], None).await.0,
        200
    );

    // A school added meanwhile (as a superuser can, connecting despite the flag is not
    // possible: re-allow, insert, and let the server notice by itself).
    admin
        .batch_execute(&format!("alter database {catalog} allow_connections true"))
        .await
        .unwrap();
    let newcomer = server.scratch.db("newcomer");
    server
        .scratch
        .insert_schools(&[("Newcomer", &newcomer)])
        .await;
    let token2 = token_for(&newcomer);
    wait_for(
        "the catalog to come back with the new school",
        Duration::from_secs(30),
        || async { (server.weeks_status(&token2).await == 200).then_some(()) },
    )
    .await;
    server.stop().await;
}

/// Starts the binary (`extra` as in `config_text`), adds a school with `tenants add` and
/// waits until the server serves it.
async fn process_serving_a_school(
    scratch: &Scratch,
    extra: &str,
    name: &str,
) -> (ServerProcess, String) {
    let process = ServerProcess::start(scratch, "proxy.toml", extra).await;
    let school = scratch.db(name);
    let output = scratch.run(
        &process.config,
        &["tenants", "add", "--name", "School", "--database", &school],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let client = http_client();
    let token = token_for(&school);
    wait_for("the school", Duration::from_secs(5), || async {
        (lunch_weeks_status(&client, &process.base, &token).await == 200).then_some(())
    })
    .await;
    (process, school)
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_running_and_a_new_audience_applies_at_once() {
    let scratch = Scratch::new();
    let (process, school) = process_serving_a_school(&scratch, "", "reload").await;
    let client = http_client();
    let token = token_for(&school);

    let good = std::fs::read_to_string(&process.config).unwrap();
    std::fs::write(&process.config, "[server]\nlisten = \n").unwrap();
    let mut process = process;
    process.signal("HUP");
    // The broken file is reported, naming the file and the line...
    let line = next_line_matching(&mut process.process.stderr, Duration::from_secs(10), |l| {
        l.contains("configuration reload failed")
    })
    .await;
    let logged: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
    assert_eq!(logged["level"], "ERROR", "{line}");
    let error = logged["error"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(
        error.starts_with(&format!("{}:2: ", process.config.display())),
        "{error}"
    );
    // ...and, once it has been handled, the running configuration keeps serving.
    assert_eq!(
        lunch_weeks_status(&client, &process.base, &token).await,
        200
    );

    let new_audience = good.replace(
        "[auth]\n",
        "[auth]\naudience = \"https://new-audience/api\"\n",
    );
    std::fs::write(&process.config, new_audience).unwrap();
    process.signal("HUP");
    wait_for(
        "old tokens to be rejected",
        Duration::from_secs(5),
        || async {
            (lunch_weeks_status(&client, &process.base, &token).await == 401).then_some(())
        },
    )
    .await;
    let mut claims = claims(&school);
    claims["aud"] = json!("https://new-audience/api");
    let fresh = rs256("key-a", "rsa_a.pem", &claims);
    assert_eq!(
        lunch_weeks_status(&client, &process.base, &fresh).await,
        200
    );
    assert_eq!(process.terminate(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn a_failing_school_is_reported_by_name_and_others_are_served() {
    let server = TestServer::start("").await;
    let good = server.scratch.db("good");
    let broken = server.scratch.db("broken");
    // The broken school's database exists with a conflicting table: its migration fails.
    connect("postgres")
        .await
        .batch_execute(&format!("create database {broken} template template0"))
        .await
        .unwrap();
    connect(&broken)
        .await
        .batch_execute("create table lunch_week (conflict int)")
        .await
        .unwrap();
    server
        .scratch
        .insert_schools(&[("Good", &good), ("Broken", &broken)])
        .await;
    server.wait_active(&[&good]).await;
    assert_eq!(server.weeks_status(&token_for(&good)).await, 200);

    let catalog = connect(&server.scratch.catalog()).await;
    let error: String = wait_for(
        "the failure to be recorded",
        Duration::from_secs(10),
        || async {
            let row = catalog
                .query_one(
                    "select status, last_error from schools where school_database = $1",
                    &[&broken],
                )
                .await
                .unwrap();
            let status: String = row.get(0);
            let error: Option<String> = row.get(1);
            (status == "provisioning").then_some(error).flatten()
        },
    )
    .await;
    assert!(
        error.contains("app_sql/0001_lunch.sql failed") && error.contains("already exists"),
        "{error}"
    );
    // Its requests get 503 saying it is being provisioned; nothing else is affected.
    let (status, body) = server
        .call(&token_for(&broken), Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 503);
    assert!(body["message"].as_str().unwrap().contains("provisioned"));
    // The admin API and `tenants list` name it with its error.
    let (status, _, body) = server
        .request_to(
            server.admin.as_ref().unwrap(),
            Method::GET,
            "/admin/schools",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let listed = parse(&body);
    let entry = listed["schools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schoolDatabase"] == broken.as_str())
        .unwrap()
        .clone();
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{entry}"
    );
    let list = stdout(
        &server
            .scratch
            .run(&server.scratch.dir.join("proxy.toml"), &["tenants", "list"]),
    );
    assert!(
        list.lines()
            .any(|l| l.contains(&broken) && l.contains("already exists")),
        "{list}"
    );
    assert_eq!(server.weeks_status(&token_for(&good)).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_adds_suspends_resumes_and_removes_schools() {
    let server = TestServer::start("").await;
    let admin = server.admin.clone().unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let school = server.scratch.db("signup");
    let body = json!({"name": "Signup School", "database": school}).to_string();
    // Without the admin token: 401.
    let (status, _, _) = server
        .request_to(&admin, Method::POST, "/admin/schools", &[], Some(&body))
        .await;
    assert_eq!(status, 401);
    let (status, _, response) = server
        .request_to(
            &admin,
            Method::POST,
            "/admin/schools",
            &[("authorization", &auth)],
            Some(&body),
        )
        .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&response));
    let (status, _, _) = server
        .request_to(
            &admin,
            Method::POST,
            "/admin/schools",
            &[("authorization", &auth)],
            Some(&body),
        )
        .await;
    assert_eq!(status, 409, "duplicates are refused");
    let token = token_for(&school);
    wait_for(
        "the signed-up school to be served",
        Duration::from_secs(10),
        || async { (server.weeks_status(&token).await == 200).then_some(()) },
    )
    .await;
    for (action, expected) in [("suspend", 403), ("resume", 200)] {
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
        assert_eq!(status, 200);
        assert_eq!(server.weeks_status(&token).await, expected, "{action}");
    }
    let (status, _, _) = server
        .request_to(
            &admin,
            Method::DELETE,
            &format!("/admin/schools/{school}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.weeks_status(&token).await, 403);
    let existing: HashSet<String> = server.scratch.databases().await.into_iter().collect();
    assert!(existing.contains(&school), "the database is kept");
    server.stop().await;
}

#[tokio::test]
async fn sighup_with_new_pool_settings_reopens_the_pools_with_them() {
    let scratch = Scratch::new();
    let (process, school) =
        process_serving_a_school(&scratch, "[tenants]\npool_max_size = 8\n", "resize").await;
    let client = http_client();
    let token = token_for(&school);
    let burst = |n: usize| {
        futures_util::future::join_all(
            (0..n).map(|_| lunch_weeks_status(&client, &process.base, &token)),
        )
    };
    for status in burst(16).await {
        assert_eq!(status, 200);
    }
    let before = backend_pids(&school).await;
    assert!(!before.is_empty());

    // One connection per school from now on, carrying up to 32 requests at once.
    let text = std::fs::read_to_string(&process.config).unwrap();
    let resized = text.replace(
        "pool_max_size = 8\n",
        "pool_max_size = 1\npipeline_depth = 32\n",
    );
    assert_ne!(text, resized);
    std::fs::write(&process.config, resized).unwrap();
    process.signal("HUP");
    wait_for(
        "the connections of the old pool to close",
        Duration::from_secs(10),
        || async {
            let now = backend_pids(&school).await;
            now.iter().all(|pid| !before.contains(pid)).then_some(())
        },
    )
    .await;

    // The same burst now shares one new connection.
    for status in burst(16).await {
        assert_eq!(status, 200);
    }
    let after = backend_pids(&school).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!before.contains(&after[0]));
    assert_eq!(process.terminate(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn sighup_with_only_a_new_tenants_password_reopens_the_pools() {
    let scratch = Scratch::new();
    // Trust authentication accepts any password, so both logins work; only the reload
    // decides which one the pools use.
    let (process, school) = process_serving_a_school(
        &scratch,
        "[tenants]\nurl = \"postgres://postgres:first-password@127.0.0.1:5432\"\n",
        "password",
    )
    .await;
    let client = http_client();
    let token = token_for(&school);
    let before = backend_pids(&school).await;
    assert!(!before.is_empty());

    let text = std::fs::read_to_string(&process.config).unwrap();
    let changed = text.replace(":first-password@", ":second-password@");
    assert_ne!(text, changed);
    std::fs::write(&process.config, changed).unwrap();
    process.signal("HUP");
    wait_for(
        "the connections of the old pool to close",
        Duration::from_secs(10),
        || async {
            let now = backend_pids(&school).await;
            now.iter().all(|pid| !before.contains(pid)).then_some(())
        },
    )
    .await;

    // The school is served on a new connection.
    assert_eq!(
        lunch_weeks_status(&client, &process.base, &token).await,
        200
    );
    let after = backend_pids(&school).await;
    assert!(!after.is_empty(), "{after:?}");
    assert!(after.iter().all(|pid| !before.contains(pid)), "{after:?}");
    assert_eq!(process.terminate(Duration::from_secs(10)).await, 0);
}

/// The catalog row of `database`: status, last_error, provision_attempts.
async fn school_row(
    catalog: &tokio_postgres::Client,
    database: &str,
) -> (String, Option<String>, i32) {
    let row = catalog
        .query_one(
            "select status, last_error, provision_attempts from schools where school_database = $1",
            &[&database],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn without_auto_provision_a_new_school_is_not_provisioned() {
    let server = TestServer::start("[tenants]\nauto_provision = false\n").await;
    let school = server.scratch.db("manual");
    server.scratch.insert_schools(&[("Manual", &school)]).await;
    // The refresh that reads the new row is where provisioning would start.
    wait_for(
        "the new row in the snapshot",
        Duration::from_secs(10),
        || async {
            let _ = server.running().refresh().await;
            server
                .running()
                .app
                .snapshot
                .load()
                .by_database(&school)
                .map(|_| ())
        },
    )
    .await;
    let (status, body) = server
        .call(&token_for(&school), Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "school_provisioning", "{body}");
    // An absence needs a window: far longer than provisioning one school takes here
    // (well under a second), and refreshes keep coming meanwhile.
    let catalog = connect(&server.scratch.catalog()).await;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        server.running().refresh().await.unwrap();
        assert!(
            !server.scratch.databases().await.contains(&school),
            "the database was created"
        );
        assert_eq!(
            school_row(&catalog, &school).await,
            ("provisioning".into(), None, 0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn pool_min_idle_opens_connections_ahead_of_requests() {
    let server = TestServer::start("[tenants]\npool_min_idle = 3\npool_max_size = 6\n").await;
    let school = server.scratch.db("warm");
    server.add_schools(&[&school]).await;
    // The school's pool is made by its first request; one request needs one connection.
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    // The pool fills up to min_idle spare connections without any further request.
    let opened = wait_for(
        "pool_min_idle connections to open",
        Duration::from_secs(10),
        || async {
            let count = backend_pids(&school).await.len();
            (count > 3).then_some(count)
        },
    )
    .await;
    // Three idle ones beside the lane of the first request.
    assert_eq!(opened, 4);
    server.stop().await;
}

#[tokio::test]
async fn without_notifications_the_timer_alone_brings_a_new_school() {
    let interval = Duration::from_secs(3);
    let server =
        TestServer::start("[catalog]\nnotifications = false\nrefresh_interval = \"3s\"\n").await;
    let generation = || server.running().app.snapshot.load().generation;
    // Wait for a tick of the timer, so the next one is a whole interval away.
    let before = generation();
    wait_for("a timer refresh", interval * 3, || async {
        (generation() > before).then_some(())
    })
    .await;
    let ticked = Instant::now();
    let ticked_generation = generation();

    // `tenants add` provisions the school, activates it and notifies: only a server
    // listening would see it before the timer.
    let school = server.scratch.db("timer");
    let output = server.scratch.run(
        &server.scratch.dir.join("proxy.toml"),
        &["tenants", "add", "--name", "Timer", "--database", &school],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = token_for(&school);
    let refused = std::cell::Cell::new(0);
    wait_for("the school after the timer", interval * 3, || async {
        match server.weeks_status(&token).await {
            200 => Some(()),
            status => {
                assert_eq!(status, 403);
                refused.set(refused.get() + 1);
                None
            }
        }
    })
    .await;
    let served_after = ticked.elapsed();
    assert!(refused.get() > 0, "served before any refresh");
    assert!(generation() > ticked_generation);
    assert!(
        served_after >= interval - Duration::from_millis(300),
        "served {served_after:?} after a timer tick, before the next"
    );
    server.stop().await;
}

#[tokio::test]
async fn failed_provisioning_is_retried_with_backoff() {
    // Refreshes every 200 ms: any retry faster than the backoff would show.
    let server = TestServer::start("[catalog]\nrefresh_interval = \"200ms\"\n").await;
    let school = server.scratch.db("retried");
    // The database exists with a table in the way: the first attempt fails.
    connect("postgres")
        .await
        .batch_execute(&format!("create database {school} template template0"))
        .await
        .unwrap();
    let database = connect(&school).await;
    database
        .batch_execute("create table lunch_week (conflict int)")
        .await
        .unwrap();
    server.scratch.insert_schools(&[("Retried", &school)]).await;
    let catalog = connect(&server.scratch.catalog()).await;
    wait_for("the first failure", Duration::from_secs(10), || async {
        let (_, error, attempts) = school_row(&catalog, &school).await;
        (error.is_some() && attempts == 1).then_some(())
    })
    .await;
    let failed = Instant::now();
    // The obstacle goes away; the next attempt, after the backoff, succeeds.
    database
        .batch_execute("drop table lunch_week")
        .await
        .unwrap();
    server.wait_active(&[&school]).await;
    let retried_after = failed.elapsed();
    let (status, error, attempts) = school_row(&catalog, &school).await;
    assert_eq!((status.as_str(), error), ("active", None));
    assert_eq!(attempts, 1, "one failed attempt, then the retry succeeded");
    // The first backoff is 2 s (control/mod.rs); the retry is not sooner.
    assert!(
        retried_after >= Duration::from_millis(1_500),
        "retried after {retried_after:?}"
    );
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    server.stop().await;
}

/// `catalog_reads_total{kind}` from the admin listener's /metrics.
async fn catalog_reads(server: &TestServer, kind: &str) -> u64 {
    let admin = server.admin.as_ref().unwrap();
    let (status, _, body) = server
        .request_to(admin, Method::GET, "/metrics", &[], None)
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let series = format!("catalog_reads_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

async fn admin_post_refresh(server: &TestServer) -> Value {
    let (status, _, body) = server
        .request_to(
            server.admin.as_ref().unwrap(),
            Method::POST,
            "/admin/refresh",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    parse(&body)
}

#[tokio::test]
async fn a_lost_notification_is_repaired_by_the_next_full_refresh() {
    // A long refresh interval: only notifications and the admin refresh read the catalog.
    let server = TestServer::start("[catalog]\nrefresh_interval = \"1h\"\n").await;
    let (school, sentinel) = (server.scratch.db("lost"), server.scratch.db("sentinel"));
    server.add_schools(&[&school, &sentinel]).await;
    let token = token_for(&school);
    assert_eq!(server.weeks_status(&token).await, 200);

    // Suspended with the triggers off (replica role): no notification is sent.
    let mut catalog = connect(&server.scratch.catalog()).await;
    let tx = catalog.transaction().await.unwrap();
    tx.batch_execute("set local session_replication_role = replica")
        .await
        .unwrap();
    tx.execute(
        "update schools set status = 'suspended' where school_database = $1",
        &[&school],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // A notified change after it is applied by an incremental read of that school alone;
    // the lost change stays unseen (notifications are handled in order).
    let incremental = catalog_reads(&server, "incremental").await;
    catalog
        .execute(
            "update schools set school_name = 'Seen' where school_database = $1",
            &[&sentinel],
        )
        .await
        .unwrap();
    wait_for("the notified change", Duration::from_secs(5), || async {
        let snapshot = server.running().app.snapshot.load();
        (snapshot.by_database(&sentinel)?.name == "Seen").then_some(())
    })
    .await;
    assert!(catalog_reads(&server, "incremental").await > incremental);
    assert_eq!(
        server.weeks_status(&token).await,
        200,
        "the lost change is unseen"
    );

    // The next full read is the truth.
    let full = catalog_reads(&server, "full").await;
    let report = admin_post_refresh(&server).await;
    assert_eq!(report["schools"], 2, "{report}");
    assert_eq!(server.weeks_status(&token).await, 403);
    assert!(catalog_reads(&server, "full").await > full);
    server.stop().await;
}

#[tokio::test]
async fn a_suspended_school_without_a_database_is_reported_and_not_created() {
    let server = TestServer::start("").await;
    let (ghost, kept) = (server.scratch.db("ghost"), server.scratch.db("kept"));
    // `kept` has a database (empty, never migrated); `ghost` has none.
    let admin = connect("postgres").await;
    admin
        .batch_execute(&format!("create database {kept}"))
        .await
        .unwrap();
    let catalog = connect(&server.scratch.catalog()).await;
    for database in [&ghost, &kept] {
        catalog
            .execute(
                "insert into schools (school_name, school_database, status) values ('S', $1, 'suspended')",
                &[database],
            )
            .await
            .unwrap();
    }

    // The existing database is migrated, and the school stays suspended.
    let latest = tenant_edge::tenancy::migrate::app_migrations().latest_version();
    wait_for("kept to be migrated", Duration::from_secs(20), || async {
        let row = catalog
            .query_one(
                "select db_version, status from schools where school_database = $1",
                &[&kept],
            )
            .await
            .unwrap();
        (row.get::<_, i32>(0) == latest).then(|| row.get::<_, String>(1))
    })
    .await
    .eq("suspended")
    .then_some(())
    .expect("kept stays suspended");
    assert!(tables(&kept).await.contains(&"lunch_week".to_string()));

    // The missing one is reported in the catalog, the admin API and `tenants list`.
    let error: String = wait_for("ghost's report", Duration::from_secs(20), || async {
        let row = catalog
            .query_one(
                "select last_error from schools where school_database = $1",
                &[&ghost],
            )
            .await
            .unwrap();
        row.get::<_, Option<String>>(0)
    })
    .await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("suspended"), "{error}");
    // The admin API shows it as the catalog has it once the notification is read.
    wait_for(
        "ghost's report in the admin API",
        Duration::from_secs(5),
        || async {
            let (status, _, body) = server
                .request_to(
                    server.admin.as_ref().unwrap(),
                    Method::GET,
                    "/admin/schools",
                    &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
                    None,
                )
                .await;
            assert_eq!(status, 200);
            let listed = parse(&body);
            let entry = listed["schools"]
                .as_array()?
                .iter()
                .find(|s| s["schoolDatabase"] == ghost.as_str())?
                .clone();
            let error = entry["lastError"].as_str()?;
            (error.contains("does not exist") && entry["status"] == "suspended").then_some(())
        },
    )
    .await;
    let list = stdout(
        &server
            .scratch
            .run(&server.scratch.dir.join("proxy.toml"), &["tenants", "list"]),
    );
    assert!(
        list.lines()
            .any(|l| l.contains(&ghost) && l.contains("does not exist")),
        "{list}"
    );
    // And its database was not created.
    assert!(!server.scratch.databases().await.contains(&ghost));
    server.stop().await;
}
