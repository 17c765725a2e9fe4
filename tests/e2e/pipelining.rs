//! Shared, pipelined connections (src/pools/lanes.rs): requests of one school share its
//! connections, and that never mixes schools, never holds requests up behind a stuck
//! query when another connection has room, and never keeps idle connections open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use http::Method;
use serde_json::{json, Value};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::server::{claims, hs256, TestServer};
use crate::support::{connect, lock_waiters, wait_for};

/// Connections of `database` in pg_stat_activity.
async fn backends(admin: &tokio_postgres::Client, database: &str) -> i64 {
    admin
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// The `pool_*` gauge `family` of `school` on the admin listener's /metrics (0 when the
/// series is absent).
async fn pool_gauge(server: &TestServer, family: &str, school: &str) -> f64 {
    let admin = server.admin.clone().expect("admin listener");
    let (status, _, body) = server
        .request_to(&admin, Method::GET, "/metrics", &[], None)
        .await;
    assert_eq!(status, 200);
    let series = format!("{family}{{school=\"{school}\"}} ");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

/// Holds `ACCESS EXCLUSIVE` on `lunch_week` of `database` until committed: every API
/// query of that school waits, so its requests stay on their connections.
async fn lock_table(database: &str) -> tokio_postgres::Client {
    let client = connect(database).await;
    client
        .batch_execute("begin; lock table lunch_week in access exclusive mode")
        .await
        .unwrap();
    client
}

/// Backend pids of tenant-edge's connections to `database`.
async fn tenant_edge_pids(admin: &tokio_postgres::Client, database: &str) -> Vec<i32> {
    admin
        .query(
            "select pid from pg_stat_activity where datname = $1 and application_name = 'tenant-edge'",
            &[&database],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn concurrent_requests_share_connections_and_schools_stay_apart() {
    let server = TestServer::start("[tenants]\npool_max_size = 2\npipeline_depth = 16\n").await;
    let schools = [server.scratch.db("pa"), server.scratch.db("pb")];
    server.add_schools(&[&schools[0], &schools[1]]).await;
    let tokens: Vec<String> = schools.iter().map(|s| hs256(&claims(s))).collect();
    // Each school gets a different number of weeks, so a response from the wrong school
    // shows in its length.
    for (index, token) in tokens.iter().enumerate() {
        for week in 0..(index + 1) * 3 {
            let body = json!({ "weekOf": format!("2021-03-{:02}", week + 1), "isPublished": true });
            let (status, _) = server
                .call(token, Method::POST, "/api/lunch-week", Some(body))
                .await;
            assert_eq!(status, 200);
        }
    }

    // 32 requests at a time, alternating schools, reads and writes mixed: every answer
    // comes from the caller's own school.
    let server = &server;
    for round in 0..4 {
        let requests = (0..32).map(|i| {
            let school = i % 2;
            let token = &tokens[school];
            async move {
                if i % 8 >= 6 {
                    let body = json!({ "weekOf": "2022-01-03", "isPublished": false });
                    let (status, value) = server
                        .call(token, Method::POST, "/api/lunch-week", Some(body))
                        .await;
                    assert_eq!(status, 200, "{value}");
                    (school, None, value["lunchWeekId"].as_i64())
                } else {
                    let (status, value) = server
                        .call(token, Method::GET, "/api/lunch-week", None)
                        .await;
                    assert_eq!(status, 200, "{value}");
                    (school, Some(value), None)
                }
            }
        });
        for (school, list, _) in join_all(requests).await {
            if let Some(Value::Array(weeks)) = list {
                let seeded = (school + 1) * 3;
                let published = weeks.iter().filter(|w| w["isPublished"] == true).count();
                assert_eq!(
                    published, seeded,
                    "round {round}: school {school} saw {weeks:?}"
                );
            }
        }
    }
    // The writes landed in the school that made them: 4 rounds x 4 POSTs per school.
    for (school, database) in schools.iter().enumerate() {
        let client = connect(database).await;
        let extra: i64 = client
            .query_one(
                "select count(*) from lunch_week where week_of = '2022-01-03'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(extra, 16, "school {school}");
    }
    // 32 requests at a time were served by at most pool_max_size connections per school.
    let admin = connect("postgres").await;
    for database in &schools {
        let count = backends(&admin, database).await;
        assert!((1..=2).contains(&count), "{database}: {count} connections");
    }

    // Pipelined, not queued: with the school's table locked, 20 requests are on its
    // connections at once (pool_requests), more than there are connections; a plain pool
    // would hold all but two of them waiting for a connection (pool_waiting).
    let lock = lock_table(&schools[0]).await;
    let held =
        join_all((0..20).map(|_| server.call(&tokens[0], Method::GET, "/api/lunch-week", None)));
    let observed = async {
        wait_for(
            "20 requests on the connections",
            Duration::from_secs(10),
            || async {
                (pool_gauge(server, "pool_requests", &schools[0]).await == 20.0).then_some(())
            },
        )
        .await;
        let connections = pool_gauge(server, "pool_connections", &schools[0]).await;
        let waiting = pool_gauge(server, "pool_waiting", &schools[0]).await;
        lock.batch_execute("commit").await.unwrap();
        (connections, waiting)
    };
    let (answers, (connections, waiting)) = tokio::join!(held, observed);
    assert!(
        (1.0..=2.0).contains(&connections),
        "{connections} connections"
    );
    assert_eq!(waiting, 0.0);
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_stuck_query_does_not_hold_up_requests_that_another_connection_can_take() {
    let server = TestServer::start(
        "[server]\nrequest_timeout = \"5s\"\n[tenants]\npool_max_size = 2\npipeline_depth = 8\nstatement_timeout = \"30s\"\n",
    )
    .await;
    let school = server.scratch.db("stuck");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));
    let week = json!({ "weekOf": "2021-03-01", "isPublished": true });
    let (status, created) = server
        .call(&token, Method::POST, "/api/lunch-week", Some(week))
        .await;
    assert_eq!(status, 200);
    let id = created["lunchWeekId"].as_i64().unwrap();

    // A transaction of the test holds the week's row: an update of it waits on the row
    // lock (reads are not blocked: PostgreSQL reads never wait for row locks).
    let holder = connect(&school).await;
    holder
        .batch_execute(&format!(
            "begin; select * from lunch_week where lunch_week_id = {id} for update"
        ))
        .await
        .unwrap();
    let path = format!("/api/lunch-week/{id}");
    let body = json!({ "lunchWeekId": id, "weekOf": "2021-03-01", "isPublished": false });
    let update = server.call(&token, Method::PUT, &path, Some(body));
    let admin = connect("postgres").await;
    let (update_result, ()) = tokio::join!(update, async {
        wait_for(
            "the update to wait on the row lock",
            Duration::from_secs(10),
            || async { (lock_waiters(&admin, &school).await == 1).then_some(()) },
        )
        .await;
        // Past the stall threshold of a school's only busy connection (src/pools/lanes.rs,
        // STUCK_MS, 100 ms).
        tokio::time::sleep(Duration::from_millis(250)).await;

        // Reads meanwhile, several at a time: they go to the other connection (opened for
        // them), not behind the stuck update, and all answer well before request_timeout.
        for _ in 0..5 {
            let reads = (0..6).map(|_| server.call(&token, Method::GET, "/api/lunch-week", None));
            for (status, body) in join_all(reads).await {
                assert_eq!(status, 200, "{body}");
            }
        }
        holder.batch_execute("commit").await.unwrap();
    });
    // Once the lock is gone, the update completes too.
    assert_eq!(update_result.0, 200, "{}", update_result.1);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_close_after_idle_timeout() {
    let server = TestServer::start("[tenants]\nidle_timeout = \"300ms\"\n").await;
    let school = server.scratch.db("idle");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));
    let admin = connect("postgres").await;
    // The school's connections, seen right after a request (which makes them fresh: a
    // look that comes too late on a loaded machine just tries again).
    let (opened, last_request) = wait_for(
        "the school's connections after a request",
        Duration::from_secs(10),
        || async {
            let reads = (0..8).map(|_| server.call(&token, Method::GET, "/api/lunch-week", None));
            for (status, _) in join_all(reads).await {
                assert_eq!(status, 200);
            }
            let last_request = std::time::Instant::now();
            let opened = tenant_edge_pids(&admin, &school).await;
            (!opened.is_empty()).then_some((opened, last_request))
        },
    )
    .await;
    // Closed by the server, and their budget permits returned.
    wait_for(
        "the idle connections to close",
        Duration::from_secs(10),
        || async {
            let now = tenant_edge_pids(&admin, &school).await;
            let closed = opened.iter().all(|pid| !now.contains(pid))
                && server.running().app.budget.in_use() == 0;
            closed.then_some(())
        },
    )
    .await;
    // Not before they were idle for idle_timeout.
    let closed_after = last_request.elapsed();
    assert!(
        closed_after >= Duration::from_millis(300),
        "closed {closed_after:?} after the last request"
    );
    // And the school is served again, on a new connection.
    assert_eq!(server.weeks_status(&token).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn with_the_budget_spent_a_school_pipelines_instead_of_waiting_for_a_connection() {
    // A budget of 3 connections for every school together, and pools that could grow to 8.
    let server = TestServer::start(
        "[tenants]\nmax_total_connections = 3\npool_max_size = 8\nacquire_timeout = \"1s\"\n",
    )
    .await;
    let schools = [server.scratch.db("ba"), server.scratch.db("bb")];
    server.add_schools(&[&schools[0], &schools[1]]).await;
    let tokens: Vec<String> = schools.iter().map(|s| hs256(&claims(s))).collect();

    // 24 requests at once to one school, held on their connections by a lock on the row
    // they update (a row lock, unlike a table lock, lets new connections prepare their
    // statements): its connections stop growing at the budget and the rest share them;
    // none waits for a connection that cannot come (503).
    let week = json!({ "weekOf": "2021-03-01", "isPublished": true });
    let (status, created) = server
        .call(&tokens[0], Method::POST, "/api/lunch-week", Some(week))
        .await;
    assert_eq!(status, 200);
    let id = created["lunchWeekId"].as_i64().unwrap();
    let admin = connect("postgres").await;
    let lock = connect(&schools[0]).await;
    lock.batch_execute(&format!(
        "begin; select * from lunch_week where lunch_week_id = {id} for update"
    ))
    .await
    .unwrap();
    let path = format!("/api/lunch-week/{id}");
    let body = json!({ "lunchWeekId": id, "weekOf": "2021-03-01", "isPublished": false });
    let burst =
        join_all((0..24).map(|_| server.call(&tokens[0], Method::PUT, &path, Some(body.clone()))));
    let spent = async {
        wait_for(
            "24 requests on the budget's 3 connections",
            Duration::from_secs(10),
            || async {
                (pool_gauge(&server, "pool_requests", &schools[0]).await == 24.0).then_some(())
            },
        )
        .await;
        let connections = tenant_edge_pids(&admin, &schools[0]).await.len();
        lock.batch_execute("commit").await.unwrap();
        connections
    };
    let (answers, connections) = tokio::join!(burst, spent);
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(connections, 3, "the whole budget, and no more");
    assert_eq!(server.running().app.budget.in_use(), 3);
    // The other school still gets a connection: an idle one of the first is closed for it.
    assert_eq!(server.weeks_status(&tokens[1]).await, 200);
    assert_eq!(tenant_edge_pids(&admin, &schools[1]).await.len(), 1);
    wait_for(
        "an idle connection of the first school to close",
        Duration::from_secs(5),
        || async { (tenant_edge_pids(&admin, &schools[0]).await.len() == 2).then_some(()) },
    )
    .await;
    assert!(server.running().app.budget.in_use() <= 3);
    server.stop().await;
}

/// A TCP relay to PostgreSQL that, while told to hold, accepts new connections and never
/// answers them (a database server that hangs during connection setup).
struct Relay {
    address: SocketAddr,
    hold: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(false));
        let holding = hold.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let hold = holding.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if hold {
                        // Silent until the client gives up.
                        let mut buffer = [0u8; 1024];
                        while matches!(inbound.read(&mut buffer).await, Ok(n) if n > 0) {}
                        return;
                    }
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay {
            address,
            hold,
            task,
        }
    }

    fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_request_cancelled_while_its_connection_opens_does_not_block_the_school() {
    let relay = Relay::start().await;
    let server = TestServer::start(&format!(
        "[server]\nrequest_timeout = \"300ms\"\n\
         [tenants]\nurl = \"postgres://postgres@{}/postgres\"\npool_max_size = 1\n\
         connect_timeout = \"2s\"\nacquire_timeout = \"5s\"\n",
        relay.address
    ))
    .await;
    let school = server.scratch.db("cancelled");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));

    // The school's first connection hangs in its setup: the request's deadline passes
    // while the connection is being opened, and the request is dropped mid-way.
    relay.hold(true);
    let started = std::time::Instant::now();
    let (status, body) = server
        .call(&token, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 504, "{body}");

    // The database answers again. The cancelled request gave its claim on the school's
    // one lane back, so the school opens a connection again; the abandoned attempt holds
    // the pool's one slot until it gives up at connect_timeout (2 s), and not longer:
    // served by then plus slack, not after the next refresh or never.
    relay.hold(false);
    server
        .wait_weeks_status(
            &token,
            200,
            "the school to be served again",
            Duration::from_millis(3_500),
        )
        .await;
    let recovered = started.elapsed();
    assert!(
        recovered < Duration::from_millis(3_500),
        "served again {recovered:?} after the cancelled request"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_query_over_statement_timeout_is_a_503_within_it() {
    // request_timeout far beyond statement_timeout: only PostgreSQL's cancel can end the
    // query this early.
    let server = TestServer::start(
        "[server]\nrequest_timeout = \"10s\"\n[tenants]\nstatement_timeout = \"500ms\"\n",
    )
    .await;
    let school = server.scratch.db("slow");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));
    // A connection of the school is open before the lock, so the request waits on the
    // lock only (the statements are prepared when a connection opens).
    assert_eq!(server.weeks_status(&token).await, 200);
    let lock = lock_table(&school).await;
    let started = std::time::Instant::now();
    let auth = format!("Bearer {token}");
    let (status, headers, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    let took = started.elapsed();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    lock.batch_execute("commit").await.unwrap();
    assert_eq!(server.weeks_status(&token).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn with_every_connection_busy_a_request_gets_503_at_acquire_timeout() {
    // One connection carrying one request: a second request has nowhere to go.
    let server = TestServer::start(
        "[server]\nrequest_timeout = \"10s\"\n\
         [tenants]\npool_max_size = 1\npipeline_depth = 1\nacquire_timeout = \"500ms\"\nstatement_timeout = \"30s\"\n",
    )
    .await;
    let school = server.scratch.db("busy");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));
    assert_eq!(server.weeks_status(&token).await, 200);
    let lock = lock_table(&school).await;
    let admin = connect("postgres").await;
    let busy = server.call(&token, Method::GET, "/api/lunch-week", None);
    let refused = async {
        wait_for(
            "the first request to wait on the lock",
            Duration::from_secs(10),
            || async { (lock_waiters(&admin, &school).await == 1).then_some(()) },
        )
        .await;
        let started = std::time::Instant::now();
        let auth = format!("Bearer {token}");
        let answer = server
            .request(
                Method::GET,
                "/api/lunch-week",
                &[("authorization", &auth)],
                None,
            )
            .await;
        let took = started.elapsed();
        lock.batch_execute("commit").await.unwrap();
        (answer, took)
    };
    let ((status, body), ((second, headers, refusal), took)) = tokio::join!(busy, refused);
    let refusal: Value = serde_json::from_slice(&refusal).unwrap();
    assert_eq!(second, 503, "{refusal}");
    assert_eq!(refusal["code"], "database_unavailable", "{refusal}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    // The request that held the connection completes once the lock is gone.
    assert_eq!(status, 200, "{body}");
    assert_eq!(tenant_edge_pids(&admin, &school).await.len(), 1);
    server.stop().await;
}
