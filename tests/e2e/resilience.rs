//! Failures around the request path: a replica whose catalog is not loaded yet, HTTP/2
//! connections left idle, school connections killed under the pool, and the control
//! loop's supervision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::server::*;
use crate::support::*;

/// The value of the sample `name` (with its labels, as written) in a /metrics text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

async fn metrics_text(server: &TestServer) -> String {
    let admin = server.admin.clone().expect("admin listener");
    let (status, _, body) = server
        .request_to(&admin, Method::GET, "/metrics", &[], None)
        .await;
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_answers_503_until_its_catalog_is_loaded() {
    let first = TestServer::start("").await;
    let school = first.scratch.db("loading");
    first.add_schools(&[&school]).await;
    let slug = school.replace('_', "-");

    // The catalog's schools table is locked by an open transaction: a replica started now
    // cannot read its first snapshot until the transaction ends.
    let mut holder = connect(&first.scratch.catalog()).await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("lock table schools in access exclusive mode")
        .await
        .unwrap();

    let text = config_text(&first.scratch, "");
    let path = first.scratch.dir.join("replica.toml");
    let config = tenant_edge::config::from_str(&text, &path, &|_| None).unwrap();
    let replica = tenant_edge::serve::start(config)
        .await
        .expect("replica starts");
    let base = format!("http://{}", replica.address);
    let admin = connect("postgres").await;
    wait_for(
        "the replica to wait on the schools lock",
        Duration::from_secs(20),
        || async { (lock_waiters(&admin, &first.scratch.catalog()).await > 0).then_some(()) },
    )
    .await;

    let auth = format!("Bearer {}", token_for(&school));
    let public = format!("/api/lunch-week-public/{slug}/2020-11-16");
    for (path, headers) in [
        ("/api/lunch-week", vec![("authorization", auth.as_str())]),
        (public.as_str(), vec![]),
    ] {
        let (status, response_headers, body) = first
            .request_to(&base, Method::GET, path, &headers, None)
            .await;
        let body = parse(&body);
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "catalog_loading", "{path}: {body}");
        assert_eq!(response_headers["retry-after"], "1", "{path}");
    }

    lock.rollback().await.unwrap();
    wait_for(
        "the replica to load its catalog",
        Duration::from_secs(20),
        || async {
            let (status, _, _) = first
                .request_to(&base, Method::GET, "/readyz", &[], None)
                .await;
            (status == 200).then_some(())
        },
    )
    .await;
    let (status, _, body) = first
        .request_to(
            &base,
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = first
        .request_to(&base, Method::GET, &public, &[], None)
        .await;
    // The school is found now; it has no published week.
    assert_eq!(parse(&body)["code"], "not_published", "{status}");

    replica.shutdown().await;
    first.stop().await;
}

/// The server's readiness and `control_loop_restarts_total` follow a supervised control
/// loop. The real loop has no way to fail on demand (and gets none), so a second
/// supervisor reports into the running server's state, with a loop that panics once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_follow_a_supervised_loop_that_panics() {
    use tenant_edge::control::supervisor::{supervise, Backoff};
    use tokio_util::sync::CancellationToken;

    let server = TestServer::start("").await;
    let metrics = metrics_text(&server).await;
    assert_eq!(
        sample(&metrics, "control_loop_restarts_total"),
        Some(0.0),
        "{metrics}"
    );

    let (_events, receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stop = CancellationToken::new();
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let backoff = Backoff {
        first: Duration::from_secs(3),
        max: Duration::from_secs(3),
    };
    let supervisor = tokio::spawn(supervise(
        server.running().app.clone(),
        receiver,
        stop.clone(),
        backoff,
        {
            let runs = runs.clone();
            move |_events, stop: CancellationToken| {
                let first = runs.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        panic!("injected control loop failure");
                    }
                    stop.cancelled().await;
                }
            }
        },
    ));

    let body = wait_for(
        "/readyz to report the loop down",
        Duration::from_secs(10),
        || async {
            let (status, _, body) = server.request(Method::GET, "/readyz", &[], None).await;
            (status == 503).then(|| parse(&body))
        },
    )
    .await;
    assert_eq!(body["reason"], "control loop not running", "{body}");
    let metrics = metrics_text(&server).await;
    assert_eq!(
        sample(&metrics, "control_loop_restarts_total"),
        Some(1.0),
        "{metrics}"
    );

    // Started again after the backoff: ready again.
    server.wait_ready().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    stop.cancel();
    supervisor.await.unwrap();
    server.stop().await;
}

/// An HTTP/2 connection (prior knowledge) to `base`: its request sender, and a task that
/// ends when the server closes the connection.
async fn h2_connection(
    base: &str,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let ended = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, ended)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    base: &str,
    path: &str,
) -> u16 {
    let request = http::Request::get(format!("{base}{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("HTTP/2 request");
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_keep_alive_timeout() {
    const IDLE: Duration = Duration::from_secs(1);
    let server = TestServer::start("[server]\nkeep_alive_timeout = \"1s\"\n").await;
    let base = server.base.clone();
    // The busy connection always has a request in flight or just answered; the idle one
    // has none after its first.
    let (mut busy, busy_ended) = h2_connection(&base).await;
    let idle_closed = Arc::new(AtomicBool::new(false));
    let keep_busy = {
        let base = base.clone();
        let idle_closed = idle_closed.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut answered = 0u32;
            while !idle_closed.load(Ordering::SeqCst) || started.elapsed() < IDLE * 3 {
                assert_eq!(h2_get(&mut busy, &base, "/healthz").await, 200);
                answered += 1;
            }
            (busy, answered)
        })
    };
    let (mut idle, idle_ended) = h2_connection(&base).await;
    // Taken before the request: the server's idle time starts after it.
    let used = std::time::Instant::now();
    assert_eq!(h2_get(&mut idle, &base, "/healthz").await, 200);
    tokio::time::timeout(IDLE * 10, idle_ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    let closed_after = used.elapsed();
    idle_closed.store(true, Ordering::SeqCst);
    assert!(closed_after >= IDLE, "closed after {closed_after:?}");
    assert!(
        idle.ready().await.is_err(),
        "the idle connection takes no more requests"
    );

    let (mut busy, answered) = keep_busy.await.unwrap();
    assert!(answered > 0);
    assert!(!busy_ended.is_finished(), "the busy connection stays open");
    assert_eq!(h2_get(&mut busy, &base, "/healthz").await, 200);
    drop(busy);
    server.stop().await;
}

/// A TCP forwarder to PostgreSQL that can make the connections open now die silently: a
/// cut connection is closed (both sides) when its client next sends anything, without
/// passing it on, as a connection dropped by a pooler or a failed-over address is found
/// dead only when used. Connections opened after the cut are untouched.
struct Forwarder {
    port: u16,
    /// Connections numbered below this are cut.
    cut_below: Arc<std::sync::atomic::AtomicU64>,
    next: Arc<std::sync::atomic::AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start() -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_below = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accept = {
            let (cut_below, next) = (cut_below.clone(), next.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let number = next.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(forward(client, number, cut_below.clone()));
                }
            })
        };
        Forwarder {
            port,
            cut_below,
            next,
            accept,
        }
    }

    fn cut_open_connections(&self) {
        self.cut_below
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    number: u64,
    cut_below: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
        return;
    };
    let (mut client_buf, mut server_buf) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        tokio::select! {
            read = client.read(&mut client_buf) => {
                let Ok(n @ 1..) = read else { return };
                if number < cut_below.load(Ordering::SeqCst) {
                    return;
                }
                if server.write_all(&client_buf[..n]).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut server_buf) => {
                let Ok(n @ 1..) = read else { return };
                if client.write_all(&server_buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Backends of `database` opened by tenant-edge.
async fn school_backends(admin: &tokio_postgres::Client, database: &str) -> Vec<i32> {
    admin
        .query(
            "select pid from pg_stat_activity where datname = $1 and application_name = 'tenant-edge'",
            &[&database],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Opens several of the school's connections with a burst of concurrent reads; returns
/// how many it has.
async fn open_connections(
    server: &TestServer,
    admin: &tokio_postgres::Client,
    school: &str,
) -> usize {
    let token = token_for(school);
    let burst = (0..16).map(|_| server.weeks_status(&token));
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    school_backends(admin, school).await.len()
}

/// Sends `count` reads one after another; returns the statuses that were not 200.
async fn failed_reads(server: &TestServer, school: &str, count: usize) -> Vec<u16> {
    let token = token_for(school);
    let mut failed = Vec::new();
    for _ in 0..count {
        let status = server.weeks_status(&token).await;
        if status != 200 {
            failed.push(status);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_the_connections_of_their_school_being_killed() {
    let forwarder = Forwarder::start().await;
    let server = TestServer::start(&format!(
        "[tenants]\nurl = \"postgres://postgres@127.0.0.1:{}\"\npool_max_size = 4\n",
        forwarder.port
    ))
    .await;
    let school = server.scratch.db("killed");
    server.add_schools(&[&school]).await;
    let admin = connect("postgres").await;

    // Backends terminated: each connection learns it at once (the server says so).
    let opened = open_connections(&server, &admin, &school).await;
    assert!(opened >= 1);
    let pids = school_backends(&admin, &school).await;
    for pid in &pids {
        admin
            .execute("select pg_terminate_backend($1)", &[pid])
            .await
            .unwrap();
    }
    wait_for("the backends to end", Duration::from_secs(10), || async {
        let left = school_backends(&admin, &school).await;
        (!left.iter().any(|pid| pids.contains(pid))).then_some(())
    })
    .await;
    // Writes too: they never run twice, so only placement keeps them off the dead
    // connections.
    let token = token_for(&school);
    for n in 0..opened * 2 + 2 {
        let week = json!({"weekOf": format!("2021-{:02}-01", n + 1), "isPublished": false});
        let (status, body) = server
            .call(&token, Method::POST, "/api/lunch-week", Some(week))
            .await;
        assert_eq!(
            status, 200,
            "write {n} after terminating {opened} backends: {body}"
        );
    }
    let failed = failed_reads(&server, &school, opened * 2 + 2).await;
    assert_eq!(
        failed,
        Vec::<u16>::new(),
        "after terminating {opened} backends"
    );

    // Connections dead without a word: each is found dead only by the query sent on it.
    let opened = open_connections(&server, &admin, &school).await;
    let before = sample(&metrics_text(&server).await, "read_retries_total").unwrap();
    forwarder.cut_open_connections();
    let failed = failed_reads(&server, &school, opened * 2 + 2).await;
    assert_eq!(
        failed,
        Vec::<u16>::new(),
        "after cutting {opened} connections"
    );
    let after = sample(&metrics_text(&server).await, "read_retries_total").unwrap();
    assert!(
        after > before,
        "the retried read is counted ({before} -> {after})"
    );

    server.stop().await;
}
