//! Issue 5, the production edges, end to end: connection and request limits, timeouts,
//! graceful shutdown of the real binary on real signals, health, metrics, CORS, the static
//! front end, `serve --demo` and `token`.
//!
//! Raw `TcpStream`s are used wherever a well-behaved HTTP client would hide what is being
//! tested (slow or half-sent heads, `Expect: 100-continue`, chunked bodies, `..` paths).
//! Nothing here sleeps to guess: every wait is on observable state with a deadline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{next_line_matching, Process};
use crate::server::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// Helpers

fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Reads until the end of a response head (or EOF), within `deadline`; returns every byte
/// read so far as text.
async fn read_head(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads until the peer closes (EOF or reset), within `deadline`; returns what was read.
async fn read_to_close(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close the connection within {deadline:?}"));
    String::from_utf8_lossy(&buf).into_owned()
}

/// One request over a fresh connection with `Connection: close`; the whole response text.
async fn raw_request(base: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(host_port(base)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream, Duration::from_secs(5)).await
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Starts the real server in-process from a complete configuration text (for settings
/// `config_text` cannot express, such as `[admin] metrics_top_schools`).
async fn start_with_text(scratch: Scratch, text: &str) -> TestServer {
    let path = scratch.dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let config = tenant_edge::config::from_str(text, &path, &|_| None).expect("test config");
    let running = tenant_edge::serve::start(config)
        .await
        .expect("server starts");
    let base = format!("http://{}", running.address);
    let admin = running.admin_address.map(|a| format!("http://{a}"));
    TestServer {
        running: Some(running),
        base,
        admin,
        client: Client::builder(TokioExecutor::new()).build_http(),
        scratch,
    }
}

/// Holds `ACCESS EXCLUSIVE` on `lunch_week` of `database` until dropped (or committed):
/// every API query of that school waits on it, which is how these tests keep a request in
/// flight without a test hook in the server.
struct TableLock {
    client: tokio_postgres::Client,
}

impl TableLock {
    async fn take(database: &str) -> TableLock {
        let client = connect(database).await;
        client
            .batch_execute("begin; lock table lunch_week in access exclusive mode")
            .await
            .unwrap();
        TableLock { client }
    }

    async fn release(self) {
        self.client.batch_execute("commit").await.unwrap();
    }
}

/// Waits until `count` sessions of `database` wait on a lock.
async fn wait_lock_waiters(database: &str, count: i64) {
    let admin = connect("postgres").await;
    wait_for(
        "requests to wait on the table lock",
        Duration::from_secs(10),
        || async { (lock_waiters(&admin, database).await >= count).then_some(()) },
    )
    .await;
}

/// Prometheus text -> {series (name plus labels as written): value}. Panics on any line
/// that is not a comment, a blank or `series value`, or on a TYPE declared twice.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    let mut types = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(types.insert(name.to_string()), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let metric = name.split('{').next().unwrap();
        assert!(
            !metric.is_empty()
                && metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !metric.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = name.strip_prefix(metric) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            }
        }
        assert!(
            series.insert(name.to_string(), value).is_none(),
            "series twice: {line}"
        );
    }
    series
}

async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let admin = server.admin.clone().expect("admin listener");
    let (status, headers, body) = server
        .request_to(&admin, Method::GET, "/metrics", &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse_prometheus(std::str::from_utf8(&body).unwrap())
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

// --- the real binary -------------------------------------------------------------------

/// The real binary, its output lines collected as they come.
/// A configuration file for the real binary: HS256 dev tokens, JSON logs at info (the
/// "listening" line carries the address), a fast catalog refresh.
fn binary_config(scratch: &Scratch, server: &str) -> std::path::PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
         [catalog]\nurl = \"{catalog}\"\nrefresh_interval = \"200ms\"\n\
         [tenants]\nacquire_timeout = \"2s\"\n\
         [auth]\nalgorithms = [\"HS256\"]\nhs256_secret = \"{HS_SECRET}\"\n\
         [log]\nlevel = \"info\"\nformat = \"json\"\n",
        catalog = pg_url(&scratch.catalog()),
    );
    let path = scratch.dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Spawns `tenant-edge serve` with `config`, adds the school `name` to the catalog and
/// waits until it is served: (process, base URL, school database, token).
async fn serving_process(
    scratch: &Scratch,
    config: &std::path::Path,
    name: &str,
) -> (Process, String, String, String) {
    let mut process = Process::spawn(scratch, config, &["serve"]);
    let base = process.listening_address().await;
    wait_for("readiness", Duration::from_secs(20), || async {
        (get(&base, "/readyz", None).await.0 == 200).then_some(())
    })
    .await;
    let school = scratch.db(name);
    scratch.insert_schools(&[("School", &school)]).await;
    let token = hs256(&claims(&school));
    wait_for(
        "the school to be served",
        Duration::from_secs(30),
        || async { (get(&base, "/api/lunch-week", Some(&token)).await.0 == 200).then_some(()) },
    )
    .await;
    (process, base, school, token)
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send(
        &http_client(),
        Method::GET,
        &format!("{base}{path}"),
        &headers,
        None,
    )
    .await
    .map_or((0, String::new()), |(status, _, body)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

// ---------------------------------------------------------------------------------------
// 1. Connection and request limits

#[tokio::test]
async fn slow_headers_are_cut_off_at_the_header_read_timeout() {
    let server = TestServer::start("[server]\nheader_read_timeout = \"1s\"\n").await;
    let stream = TcpStream::connect(host_port(&server.base)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // A byte every 100 ms, far slower than any real client: the head never completes
    // (it would take 6 s). The pace is the client under test, not a wait of the test.
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    let trickle = tokio::spawn(async move {
        for byte in request {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        writer
    });
    // The server answers 408 or closes: whatever it sends, then the close.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer))
        .await
        .expect("the server closes a slow head")
        .ok();
    let closed_at = started.elapsed();
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer to a slow head: {text:?}"
    );
    trickle.abort();
    // Not before the timeout: the head was still arriving.
    assert!(
        closed_at >= Duration::from_millis(900),
        "closed after {closed_at:?}"
    );
    // An upper bound for the timeout feature: the 1 s timeout plus 2 s of slack.
    assert!(
        closed_at < Duration::from_secs(3),
        "closed after {closed_at:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_do_not_block_others() {
    let server = TestServer::start("[server]\nheader_read_timeout = \"1s\"\n").await;
    let address = host_port(&server.base).to_string();
    // 200 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    // Meanwhile the server answers others at once.
    let (status, _, _) = server.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!(status, 200);
    // "Closed" means: the server ends each idle connection by itself (the header read
    // timeout runs from the accept: the preface read, then src/http/keep_alive.rs),
    // within the timeout plus slack.
    let started = Instant::now();
    let closings = idle.into_iter().map(|mut stream| async move {
        read_to_close(&mut stream, Duration::from_secs(4)).await;
    });
    futures_util::future::join_all(closings).await;
    assert!(started.elapsed() < Duration::from_secs(4));

    server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_outlive_the_header_timeout_until_keep_alive_timeout() {
    let server =
        TestServer::start("[server]\nheader_read_timeout = \"1s\"\nkeep_alive_timeout = \"3s\"\n")
            .await;
    let mut stream = TcpStream::connect(host_port(&server.base)).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let head = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Idle for longer than the header timeout: a load balancer reusing the connection
    // now must be served, not cut off (hyper's own header timer would have closed it).
    // The witness: a connection opened after this one went idle, sending nothing, is
    // closed at header_read_timeout; by then this one has been idle longer than that.
    let mut witness = TcpStream::connect(host_port(&server.base)).await.unwrap();
    let witness_opened = Instant::now();
    read_to_close(&mut witness, Duration::from_secs(5)).await;
    assert!(witness_opened.elapsed() >= Duration::from_millis(900));
    stream.write_all(request).await.unwrap();
    let head = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "second request: {head}");
    // Then, left idle, it is closed at keep_alive_timeout (3 s, plus slack).
    let idle_since = Instant::now();
    read_to_close(&mut stream, Duration::from_secs(6)).await;
    assert!(
        idle_since.elapsed() >= Duration::from_secs(2),
        "closed after {:?}, before keep_alive_timeout",
        idle_since.elapsed()
    );
    server.stop().await;
}

async fn school_server(extra: &str) -> (TestServer, String, String) {
    let server = TestServer::start(extra).await;
    let school = server.scratch.db("edge");
    server.add_schools(&[&school]).await;
    let token = hs256(&claims(&school));
    (server, school, token)
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let (server, _school, token) = school_server("[server]\nmax_body_bytes = 1024\n").await;
    let address = host_port(&server.base).to_string();

    // Declared 10 MB with Expect: 100-continue: 413 before a byte of the body is sent,
    // and never a `100 Continue`.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/lunch-week HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(!response.contains("100 Continue"), "{response}");
    drop(stream);

    // Chunked, over the limit: cut off with 413 while reading (the body is never ended).
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let mut request = format!(
        "POST /api/lunch-week HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..8 {
        request.push_str(&format!("200\r\n{}\r\n", "x".repeat(0x200)));
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    drop(stream);

    // Under the limit still works.
    let (status, body) = server
        .call(
            &token,
            Method::POST,
            "/api/lunch-week",
            Some(serde_json::json!({"weekOf": "2020-11-16", "isPublished": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let server = TestServer::start("").await;
    // 100 headers against the default cap of 64.
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let response = raw_request(&server.base, &request).await;
    assert_eq!(status_of(&response), 431, "{response}");

    // One 40 KiB header against the default 16 KiB cap on the head.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let response = raw_request(&server.base, &request).await;
    assert_eq!(status_of(&response), 431, "{response}");

    // A normal request on the same server is fine.
    let (status, _, _) = server.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_request_timeout_is_504() {
    let (server, school, token) = school_server(
        "[server]\nrequest_timeout = \"500ms\"\n[tenants]\nstatement_timeout = \"30s\"\n",
    )
    .await;
    // A first request opens the school's pooled connection (preparing its statements), so
    // the request below times out in its query, not while a connection is being made.
    let (status, _) = server
        .call(&token, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 200);
    let lock = TableLock::take(&school).await;
    let started = Instant::now();
    let (status, body) = server
        .call(&token, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "timeout");
    // Upper bound of the timeout feature: 500 ms plus slack, far below statement_timeout.
    assert!(started.elapsed() < Duration::from_secs(3));
    // The abandoned query was cancelled: nothing of the school waits on the lock any
    // more, although statement_timeout (30 s) would have let it wait on.
    let admin = connect("postgres").await;
    wait_for(
        "the timed-out query to be cancelled",
        Duration::from_secs(5),
        || async { (lock_waiters(&admin, &school).await == 0).then_some(()) },
    )
    .await;
    lock.release().await;
    // The school works again once the lock is gone.
    let (status, _) = server
        .call(&token, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn beyond_max_in_flight_a_request_is_a_fast_503() {
    let (server, school, token) = school_server("[server]\nmax_in_flight = 1\n").await;
    let lock = TableLock::take(&school).await;
    let held = {
        let client = server.client.clone();
        let base = server.base.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let request = http::Request::get(format!("{base}/api/lunch-week"))
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Full::default())
                .unwrap();
            client.request(request).await.unwrap().status().as_u16()
        })
    };
    wait_lock_waiters(&school, 1).await;

    let auth = format!("Bearer {token}");
    let (status, headers, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(parse(&body)["code"], "overloaded");
    assert!(headers.contains_key("retry-after"));
    // Refused while the first request is still held: it was not queued behind it.
    assert!(!held.is_finished());
    // Health checks are not API requests and never count against the cap.
    let (status, _, _) = server.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!(status, 200);

    lock.release().await;
    assert_eq!(held.await.unwrap(), 200);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Graceful shutdown of the real binary

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let scratch = Scratch::new();
    let config = binary_config(&scratch, "shutdown_grace = \"10s\"");
    let (mut process, base, school, token) = serving_process(&scratch, &config, "drain").await;

    // Three requests held in flight by a lock on the school's table.
    let lock = TableLock::take(&school).await;
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let base = base.clone();
            let token = token.clone();
            tokio::spawn(async move { get(&base, "/api/lunch-week", Some(&token)).await })
        })
        .collect();
    wait_lock_waiters(&school, 3).await;

    let signalled = Instant::now();
    process.signal("TERM");
    // New connections are refused once the listener is closed...
    let address = host_port(&base).to_string();
    wait_for(
        "new connections to be refused",
        Duration::from_secs(5),
        || async { TcpStream::connect(&address).await.is_err().then_some(()) },
    )
    .await;
    // ...while the requests in flight are still being served.
    assert!(in_flight.iter().all(|task| !task.is_finished()));
    lock.release().await;
    for task in in_flight {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(process.exit_code(Duration::from_secs(10)).await, 0);
    assert!(signalled.elapsed() < Duration::from_secs(10));

    // One JSON access line per request at info, with the school and the request id.
    let access = next_line_matching(&mut process.stderr, Duration::from_secs(5), |line| {
        line.contains("tenant_edge::access")
            && line.contains("list_weeks")
            && line.contains("\"status\":200")
    })
    .await;
    let access: Value = serde_json::from_str(&access).unwrap();
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "list_weeks");
    assert_eq!(access["status"], 200);
    assert_eq!(access["school"], school.as_str());
    assert!(access["duration_us"].is_u64());
    assert!(access["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn a_stuck_client_does_not_hold_the_exit_past_shutdown_grace() {
    let scratch = Scratch::new();
    let config = binary_config(
        &scratch,
        "shutdown_grace = \"1s\"\nheader_read_timeout = \"60s\"\nrequest_timeout = \"60s\"",
    );
    // Every other bound far beyond shutdown_grace too, so only the grace can end the wait.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[tenants]\n", "[tenants]\nstatement_timeout = \"60s\"\n"),
    )
    .unwrap();
    let (mut process, base, school, token) = serving_process(&scratch, &config, "stuck").await;
    // A request stuck in flight (its table locked; request_timeout 60 s)...
    let lock = TableLock::take(&school).await;
    let stuck = {
        let base = base.clone();
        tokio::spawn(async move { get(&base, "/api/lunch-week", Some(&token)).await })
    };
    wait_lock_waiters(&school, 1).await;
    // ...and a client that sent half a request.
    let mut stream = TcpStream::connect(host_port(&base)).await.unwrap();
    // A complete request first, so the connection is surely accepted and being served...
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // ...then half a request, never finished.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    let signalled = Instant::now();
    process.signal("TERM");
    assert_eq!(process.exit_code(Duration::from_secs(15)).await, 0);
    // shutdown_grace (1 s) plus slack for a loaded machine; the header, request and
    // statement timeouts (60 s) played no part.
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        signalled.elapsed()
    );
    // The stuck request was cut off, not answered.
    assert_eq!(stuck.await.unwrap().0, 0);
    drop(stream);
    lock.release().await;
}

#[tokio::test]
async fn sigint_stops_gracefully_too() {
    let scratch = Scratch::new();
    let config = binary_config(&scratch, "shutdown_grace = \"10s\"");
    let (mut process, base, school, token) = serving_process(&scratch, &config, "sigint").await;
    // A request held in flight by a lock on the school's table.
    let lock = TableLock::take(&school).await;
    let in_flight = tokio::spawn(async move { get(&base, "/api/lunch-week", Some(&token)).await });
    wait_lock_waiters(&school, 1).await;
    process.signal("INT");
    // Draining: the process waits for the request rather than exit under it.
    next_line_matching(&mut process.stderr, Duration::from_secs(10), |line| {
        line.contains("shutting down")
    })
    .await;
    assert!(!in_flight.is_finished());
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    lock.release().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(process.exit_code(Duration::from_secs(10)).await, 0);
}

// ---------------------------------------------------------------------------------------
// 3. Health

#[tokio::test]
async fn readyz_says_why_until_the_catalog_is_loaded_and_while_draining() {
    // The catalog on a port where nothing listens: up, but never ready.
    let scratch = Scratch::new();
    let text = config_text(&scratch, "").replace(
        &pg_url(&scratch.catalog()),
        "postgres://postgres@127.0.0.1:1/catalog",
    );
    let server = start_with_text(scratch, &text).await;
    let (status, headers, body) = server.request(Method::GET, "/readyz", &[], None).await;
    assert_eq!(status, 503);
    assert!(headers.contains_key("retry-after"));
    let body = parse(&body);
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["reason"], "catalog not loaded yet");
    let (status, _, body) = server.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!((status, parse(&body)["status"].clone()), (200, "ok".into()));
    server.stop().await;

    // With a catalog: ready.
    let (mut server, school, token) = school_server("").await;
    let (status, _, body) = server.request(Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        (status, parse(&body)["status"].clone()),
        (200, "ready".into())
    );

    // Draining: a request held in flight keeps shutdown in its drain step. /readyz turns
    // 503 at once; the main listener stops accepting at the same moment, so the answer is
    // read through the app (what /readyz renders) and the admin listener's `ready` gauge,
    // which stays up until the background tasks stop.
    let lock = TableLock::take(&school).await;
    let held = {
        let base = server.base.clone();
        tokio::spawn(async move { get(&base, "/api/lunch-week", Some(&token)).await })
    };
    wait_lock_waiters(&school, 1).await;
    let running = server.running.take().unwrap();
    let app = running.app.clone();
    let shutdown = tokio::spawn(running.shutdown());
    wait_for("draining", Duration::from_secs(5), || async {
        matches!(
            app.readiness(),
            tenant_edge::state::Readiness::NotReady("shutting down")
        )
        .then_some(())
    })
    .await;
    let metrics = scrape(&server).await;
    assert_eq!(value(&metrics, "ready"), 0.0);
    let address = host_port(&server.base).to_string();
    wait_for("refused", Duration::from_secs(5), || async {
        TcpStream::connect(&address).await.is_err().then_some(())
    })
    .await;
    lock.release().await;
    assert_eq!(held.await.unwrap().0, 200);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn with_a_drain_delay_the_load_balancer_sees_readyz_503_before_connections_are_refused() {
    let (mut server, _school, _token) = school_server("[server]\ndrain_delay = \"3s\"\n").await;
    let base = server.base.clone();
    let running = server.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    wait_for("/readyz 503 over HTTP", Duration::from_secs(2), || async {
        (get(&base, "/readyz", None).await.0 == 503).then_some(())
    })
    .await;
    // Still serving other requests meanwhile.
    assert_eq!(get(&base, "/healthz", None).await.0, 200);
    shutdown.await.unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. Metrics

#[tokio::test]
async fn metrics_parse_and_move_with_the_requests() {
    let (server, _school, token) = school_server("").await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, "ready"), 1.0);
    let list = r#"http_requests_total{route="list_weeks",status="200"}"#;
    let hits = "token_cache_hits_total";
    let misses = "token_cache_misses_total";

    for _ in 0..3 {
        let (status, _) = server
            .call(&token, Method::GET, "/api/lunch-week", None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = server
        .request(Method::GET, "/api/lunch-week", &[], None)
        .await;
    assert_eq!(status, 401);
    let expired = {
        let mut c = claims("whatever");
        c["exp"] = (now() - 3600).into();
        hs256(&c)
    };
    let (status, _) = server
        .call(&expired, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 401);

    let after = scrape(&server).await;
    assert_eq!(value(&after, list) - value(&before, list), 3.0);
    let missing = r#"jwt_rejections_total{reason="missing"}"#;
    let expired = r#"jwt_rejections_total{reason="expired"}"#;
    assert_eq!(value(&after, missing) - value(&before, missing), 1.0);
    assert_eq!(value(&after, expired) - value(&before, expired), 1.0);
    // One token used three times: verified once, then found in the cache.
    assert!(
        value(&after, hits) - value(&before, hits) >= 2.0,
        "{after:?}"
    );
    assert!(value(&after, misses) - value(&before, misses) >= 1.0);
    let count = r#"http_request_duration_seconds_count{route="list_weeks"}"#;
    let inf = r#"http_request_duration_seconds_bucket{route="list_weeks",le="+Inf"}"#;
    // The two 401s were list_weeks requests too.
    assert_eq!(value(&after, count) - value(&before, count), 5.0);
    let unauthorized = r#"http_requests_total{route="list_weeks",status="401"}"#;
    assert_eq!(
        value(&after, unauthorized) - value(&before, unauthorized),
        2.0
    );
    assert_eq!(value(&after, count), value(&after, inf));
    assert!(value(&after, "catalog_snapshot_generation") >= 1.0);
    assert!(after.contains_key("catalog_snapshot_age_seconds"));
    assert!(value(&after, r#"catalog_refresh_total{result="ok"}"#) >= 1.0);
    assert!(value(&after, r#"provision_total{result="ok"}"#) >= 1.0);
    assert!(value(&after, "connection_budget_limit") > 0.0);
    assert!(after.contains_key("connection_budget_in_use"));
    server.stop().await;
}

#[tokio::test]
async fn per_school_series_are_bounded_by_top_n_plus_other() {
    let scratch = Scratch::new();
    let text = config_text(&scratch, "").replace("[admin]\n", "[admin]\nmetrics_top_schools = 2\n");
    let server = start_with_text(scratch, &text).await;
    server.wait_ready().await;
    let schools: Vec<String> = (0..4)
        .map(|i| server.scratch.db(&format!("s{i}")))
        .collect();
    let refs: Vec<&str> = schools.iter().map(String::as_str).collect();
    server.add_schools(&refs).await;
    // School i gets 4 - i requests, so s0 and s1 are the top two.
    for (i, school) in schools.iter().enumerate() {
        let token = hs256(&claims(school));
        for _ in 0..(4 - i) {
            let (status, _) = server
                .call(&token, Method::GET, "/api/lunch-week", None)
                .await;
            assert_eq!(status, 200);
        }
    }
    let metrics = scrape(&server).await;
    let series: Vec<(&String, &f64)> = metrics
        .iter()
        .filter(|(name, _)| name.starts_with("school_requests_total{"))
        .collect();
    assert_eq!(series.len(), 3, "{series:?}");
    let of = |school: &str| {
        value(
            &metrics,
            &format!("school_requests_total{{school=\"{school}\"}}"),
        )
    };
    assert_eq!(of(&schools[0]), 4.0);
    assert_eq!(of(&schools[1]), 3.0);
    assert_eq!(of("other"), 3.0);
    // Every per-school family carries exactly the top N plus other (each of the four
    // schools has a pool now), never a label per school.
    for family in [
        "pool_connections",
        "pool_idle_connections",
        "pool_waiting",
        "pool_requests",
    ] {
        let mut labels: Vec<&str> = metrics
            .keys()
            .filter_map(|name| name.strip_prefix(family)?.strip_prefix("{school=\""))
            .map(|rest| rest.trim_end_matches("\"}"))
            .collect();
        labels.sort();
        let mut expected = vec![schools[0].as_str(), schools[1].as_str(), "other"];
        expected.sort();
        assert_eq!(labels, expected, "{family}");
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Request ids

#[tokio::test]
async fn request_ids_are_accepted_when_valid_and_generated_otherwise() {
    let server = TestServer::start("").await;
    let (_, headers, _) = server
        .request(
            Method::GET,
            "/healthz",
            &[("x-request-id", "abc-123")],
            None,
        )
        .await;
    assert_eq!(headers["x-request-id"], "abc-123");
    // Markup is never echoed (hyper itself refuses control bytes with a 400).
    let bad = "<script>alert(1)</script>";
    let response = raw_request(
        &server.base,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: {bad}\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 200);
    let echoed = response
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a generated request id");
    assert!(!echoed.is_empty() && echoed != bad);
    let (_, headers, body) = server
        .request(Method::GET, "/api/nothing-here", &[], None)
        .await;
    assert_eq!(
        parse(&body)["requestId"],
        headers["x-request-id"].to_str().unwrap()
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. CORS

#[tokio::test]
async fn cors_allows_any_origin_by_default_and_answers_preflight() {
    let server = TestServer::start("").await;
    let (status, headers, _) = server
        .request(
            Method::OPTIONS,
            "/api/lunch-week",
            &[
                ("origin", "https://anywhere.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET,HEAD,PUT,PATCH,POST,DELETE"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization,content-type"
    );
    // Every response, errors included, carries the header.
    let (status, headers, _) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("origin", "https://anywhere.example")],
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(headers["access-control-allow-origin"], "*");
    server.stop().await;
}

#[tokio::test]
async fn cors_with_a_configured_list_answers_listed_origins_only() {
    let server = TestServer::start("[server]\ncors_origins = [\"https://lunch.example\"]\n").await;
    for method in [Method::GET, Method::OPTIONS] {
        let (_, headers, _) = server
            .request(
                method.clone(),
                "/api/lunch-week",
                &[
                    ("origin", "https://lunch.example"),
                    ("access-control-request-method", "GET"),
                ],
                None,
            )
            .await;
        assert_eq!(
            headers["access-control-allow-origin"], "https://lunch.example",
            "{method}"
        );
        assert!(headers
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Origin")));
        let (_, headers, _) = server
            .request(
                method.clone(),
                "/api/lunch-week",
                &[
                    ("origin", "https://evil.example"),
                    ("access-control-request-method", "GET"),
                ],
                None,
            )
            .await;
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "{method}"
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. The static front end

#[tokio::test]
async fn the_static_front_end_is_served_without_traversal() {
    let scratch = Scratch::new();
    let public = scratch.dir.join("public");
    std::fs::create_dir_all(public.join("assets")).unwrap();
    std::fs::write(
        public.join("index.html"),
        "<!doctype html><title>lunch</title>",
    )
    .unwrap();
    std::fs::write(public.join("assets/app.js"), "console.log('lunch')").unwrap();
    std::fs::write(public.join("assets/app.css"), "body{}").unwrap();
    // Files next to the directory, which must never be reachable.
    std::fs::write(scratch.dir.join("Cargo.toml"), "SECRET-OUTSIDE").unwrap();
    std::fs::write(scratch.dir.join("secret.txt"), "SECRET-OUTSIDE").unwrap();
    let extra = format!("[server]\nstatic_dir = \"{}\"\n", public.display());
    let server = TestServer::start_in(scratch, &extra).await;

    let (status, headers, body) = server.request(Method::GET, "/", &[], None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("<title>lunch</title>"));
    let (status, headers, body) = server
        .request(Method::GET, "/assets/app.js", &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript"),
        "{headers:?}"
    );
    assert_eq!(body, b"console.log('lunch')");
    assert!(headers.contains_key("cache-control"));
    let (status, headers, _) = server
        .request(Method::GET, "/assets/app.css", &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    // A client-side route gets the app.
    let (status, _, body) = server.request(Method::GET, "/weeks/7", &[], None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<title>lunch</title>"));
    // /api never falls through to the app.
    let (status, _, body) = server.request(Method::GET, "/api/nope", &[], None).await;
    assert_eq!(status, 404);
    assert_eq!(parse(&body)["code"], "not_found");
    // A missing file and a malformed path get the flat JSON error of every failure.
    let (status, headers, body) = server
        .request(Method::GET, "/assets/missing.js", &[], None)
        .await;
    assert_error(status, &headers, &body, 404, "not_found", "Not found");
    let (status, headers, body) = server.request(Method::GET, "/%zz", &[], None).await;
    assert_error(status, &headers, &body, 400, "invalid_path", "Bad request");

    // Traversal, plain and encoded, over a raw connection so no client normalizes it.
    for path in [
        "/../Cargo.toml",
        "/../secret.txt",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/secret.txt",
        "/..%2fCargo.toml",
        "/..%2FCargo.toml",
        "/%2e%2e%2fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/..%5cCargo.toml",
        "/%252e%252e/Cargo.toml",
        "/assets/../../Cargo.toml",
        "/.%2e/Cargo.toml",
    ] {
        let response = raw_request(
            &server.base,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(!response.contains("SECRET-OUTSIDE"), "{path}: {response}");
        let status = status_of(&response);
        assert!(
            status == 400 || status == 404 || (status == 200 && response.contains("<title>lunch")),
            "{path}: {response}"
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8. First run: `serve --demo` and `token`

#[tokio::test]
async fn serve_demo_prints_a_token_and_curl_commands_that_work() {
    let scratch = Scratch::new();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [catalog]\nurl = \"{}\"\n\
         [log]\nlevel = \"info\"\nformat = \"json\"\n",
        pg_url(&scratch.catalog())
    );
    let config = scratch.dir.join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut process = Process::spawn(&scratch, &config, &["serve", "--demo"]);
    let mut printed = Vec::new();
    let deadline = Duration::from_secs(30);
    loop {
        let line = next_line_matching(&mut process.stdout, deadline, |_| true).await;
        let done = line.contains("Stop with Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("export TOKEN='"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("a token line")
        .to_string();
    let curls: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 3, "{printed:?}");

    // The demo databases live in this test's namespace, so they are cleaned up with it.
    let databases = scratch.databases().await;
    assert!(
        databases.iter().any(|d| d.ends_with("demo_pinewood")),
        "{databases:?}"
    );
    assert!(databases.iter().any(|d| d.ends_with("demo_oak_ridge")));

    let client = http_client();
    for curl in curls {
        let request = curl_to_request(curl, &token);
        let response = client.request(request).await.expect(curl);
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(status, 200, "{curl}: {}", String::from_utf8_lossy(&body));
        let json: Value = serde_json::from_slice(&body).unwrap();
        if curl.contains("lunch-week-public") {
            assert_eq!(json["isPublished"], true);
            assert_eq!(json["lunchDays"].as_array().unwrap().len(), 5);
        }
    }
    process.signal("TERM");
    assert_eq!(process.exit_code(Duration::from_secs(25)).await, 0);
}

/// The request a printed `curl -s [-X M] URL [-H 'h: v' | -H "h: v"]... [-d 'body']` makes,
/// with `$TOKEN` expanded as the shell would.
fn curl_to_request(curl: &str, token: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let words = shell_words(curl);
    let mut method = "GET".to_string();
    let mut url = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut words = words.into_iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-s" => {}
            "-X" => method = words.next().unwrap(),
            "-H" => headers.push(words.next().unwrap()),
            "-d" => body = Some(words.next().unwrap()),
            other if other.starts_with("http://") => url = Some(other.to_string()),
            other => panic!("unexpected curl argument {other:?} in {curl}"),
        }
    }
    if body.is_some() && method == "GET" {
        method = "POST".into();
    }
    let mut builder = http::Request::builder()
        .method(method.as_str())
        .uri(url.expect("a URL"));
    for header in headers {
        let header = header.replace("$TOKEN", token);
        let (name, value) = header.split_once(':').unwrap();
        builder = builder.header(name.trim(), value.trim());
    }
    builder
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default(),
        )))
        .unwrap()
}

/// Splits a shell command line on spaces, honouring single and double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (_, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

#[tokio::test]
async fn the_token_command_prints_a_token_the_server_accepts() {
    let server = TestServer::start("").await;
    let school = server.scratch.db("tok");
    server.add_schools(&[&school]).await;
    let config = server.scratch.dir.join("proxy.toml");
    let output = server
        .scratch
        .run(&config, &["token", "--school", &school, "--ttl", "10m"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let (status, body) = server
        .call(&token, Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!((status, body), (200, serde_json::json!([])));
    // A different secret: refused.
    let (status, _) = server
        .call(&format!("{token}x"), Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Connection limits beyond the request

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_the_cap_frees_up() {
    let server =
        TestServer::start("[server]\nmax_connections = 3\nheader_read_timeout = \"30s\"\n").await;
    let address = host_port(&server.base).to_string();
    let accepted = || async {
        scrape(&server)
            .await
            .iter()
            .filter(|(name, _)| name.starts_with("worker_connections_total{"))
            .map(|(_, count)| *count)
            .sum::<f64>()
    };
    // Connections that start a request and stay open, one at a time: each is either
    // accepted under the cap (the server counts it) or closed at once without an answer.
    // (The test client's own keep-alive connection may hold a place for a while.)
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        let count = accepted().await;
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        let was_accepted = wait_for(
            "the connection accepted or closed",
            Duration::from_secs(5),
            || async {
                let mut byte = [0u8; 1];
                match stream.try_read(&mut byte) {
                    Ok(0) => Some(false),
                    Ok(_) => panic!("a half-sent request got an answer"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        (accepted().await > count).then_some(true)
                    }
                    Err(_) => Some(false),
                }
            },
        )
        .await;
        if was_accepted {
            held.push(stream);
        } else {
            refused += 1;
        }
    }
    assert!(refused >= 1, "a connection over the cap was closed");
    assert!(
        (2..=3).contains(&held.len()),
        "{} connections held with a cap of 3",
        held.len()
    );
    // The held ones are still being served: each finishes its request.
    for stream in &mut held {
        stream
            .write_all(b"host: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(stream, Duration::from_secs(5)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // Freed slots serve again.
    drop(held);
    wait_for(
        "a served connection after the cap frees up",
        Duration::from_secs(5),
        || async {
            let mut stream = TcpStream::connect(&address).await.ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let head = read_head(&mut stream, Duration::from_secs(2)).await;
            head.starts_with("HTTP/1.1 200").then_some(())
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let scratch = Scratch::new();
    let config = binary_config(&scratch, "header_read_timeout = \"30s\"");
    let mut process = Process::spawn_with_fd_limit(&scratch, &config, 64);
    let base = process.listening_address().await;
    wait_for("readiness", Duration::from_secs(20), || async {
        (get(&base, "/readyz", None).await.0 == 200).then_some(())
    })
    .await;
    // More connections than descriptors: the kernel completes them into the backlog,
    // the server's accept fails with EMFILE.
    let address = host_port(&base).to_string();
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(mut stream) = TcpStream::connect(&address).await {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
            held.push(stream);
        }
    }
    let warning = next_line_matching(&mut process.stderr, Duration::from_secs(10), |l| {
        l.contains("accept failed")
    })
    .await;
    assert!(warning.contains("backoff_ms"), "{warning}");
    assert!(process.child.try_wait().unwrap().is_none(), "still running");
    drop(held);
    wait_for(
        "service after the descriptors are back",
        Duration::from_secs(15),
        || async { (get(&base, "/healthz", None).await.0 == 200).then_some(()) },
    )
    .await;
    process.signal("TERM");
    assert_eq!(process.exit_code(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn every_worker_thread_takes_connections() {
    let (server, _school, token) = school_server("[server]\nworker_threads = 2\n").await;
    // A fresh client per request, so each request is a new TCP connection from a new
    // port; the kernel spreads them over the two listeners (SO_REUSEPORT), so 24 of them
    // all landing on one worker would be a 1-in-8-million chance.
    let requests = (0..24).map(|_| {
        let client = http_client();
        let url = format!("{}/api/lunch-week", server.base);
        let token = token.clone();
        async move {
            let auth = format!("Bearer {token}");
            send(
                &client,
                Method::GET,
                &url,
                &[("authorization", &auth)],
                None,
            )
            .await
            .expect("answer")
            .0
        }
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200);
    }
    let metrics = scrape(&server).await;
    let w0 = value(&metrics, r#"worker_connections_total{worker="0"}"#);
    let w1 = value(&metrics, r#"worker_connections_total{worker="1"}"#);
    assert!(w0 >= 1.0 && w1 >= 1.0, "worker 0: {w0}, worker 1: {w1}");
    assert!(w0 + w1 >= 24.0, "worker 0: {w0}, worker 1: {w1}");
    assert!(!metrics.contains_key(r#"worker_connections_total{worker="2"}"#));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// 9. The admin API's failures

/// Asserts an error response: its status and the flat JSON body `{"message", "code",
/// "requestId"}`, whose request id is the one in the `X-Request-Id` header.
fn assert_error(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    expected_status: u16,
    code: &str,
    message: &str,
) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, expected_status, "{text}");
    assert_eq!(
        headers["content-type"], "application/json; charset=utf-8",
        "{text}"
    );
    let request_id = headers["x-request-id"].to_str().unwrap();
    let expected = serde_json::json!({ "message": message, "code": code, "requestId": request_id });
    assert_eq!(parse(body), expected);
}

#[tokio::test]
async fn admin_failures_are_flat_json_errors_with_a_code() {
    let server = TestServer::start("").await;
    let admin = server.admin.clone().expect("admin listener");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    // No token, an empty one (`Bearer `, which arrives as `Bearer`: the parser trims the
    // trailing space), a wrong one, another scheme: 401 with a challenge.
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    let basic = format!("Basic {ADMIN_TOKEN}");
    for authorization in [
        None,
        Some("Bearer "),
        Some("Bearer"),
        Some(wrong.as_str()),
        Some(basic.as_str()),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let (status, response_headers, body) = server
            .request_to(&admin, Method::GET, "/admin/schools", &headers, None)
            .await;
        assert_error(
            status,
            &response_headers,
            &body,
            401,
            "unauthorized",
            "Unauthorized",
        );
        assert_eq!(
            response_headers["www-authenticate"], "Bearer",
            "{authorization:?}"
        );
    }
    // The client's request id is the one answered.
    let (status, headers, body) = server
        .request_to(
            &admin,
            Method::GET,
            "/admin/schools",
            &[("x-request-id", "admin-req-1")],
            None,
        )
        .await;
    assert_error(status, &headers, &body, 401, "unauthorized", "Unauthorized");
    assert_eq!(parse(&body)["requestId"], "admin-req-1");

    let with_token = [("authorization", auth.as_str())];
    let call = |method: Method, path: &'static str, body: Option<&'static str>| {
        let admin = admin.clone();
        let server = &server;
        async move {
            server
                .request_to(&admin, method, path, &with_token, body)
                .await
        }
    };
    let (status, headers, body) = call(Method::GET, "/admin/nope", None).await;
    assert_error(status, &headers, &body, 404, "not_found", "Not found");
    let (status, headers, body) = call(Method::POST, "/metrics", None).await;
    assert_error(
        status,
        &headers,
        &body,
        405,
        "method_not_allowed",
        "Method not allowed",
    );
    assert_eq!(headers["allow"], "GET, HEAD");
    // Bad bodies: 400 saying what to fix.
    for (request, message) in [
        ("[1]", "body must be a JSON object"),
        ("not json", "body must be a JSON object"),
        (r#"{"database": "x"}"#, "field name (a string) is required"),
        (
            r#"{"name": "A", "database": 7}"#,
            "field database must be a string",
        ),
    ] {
        let (status, headers, body) = server
            .request_to(
                &admin,
                Method::POST,
                "/admin/schools",
                &with_token,
                Some(request),
            )
            .await;
        assert_error(status, &headers, &body, 400, "bad_request", message);
    }
    let catalog = json_string(&server.scratch.catalog());
    let request = format!(r#"{{"name": "Catalog", "database": {catalog}}}"#);
    let (status, headers, body) = server
        .request_to(
            &admin,
            Method::POST,
            "/admin/schools",
            &with_token,
            Some(&request),
        )
        .await;
    assert_error(
        status,
        &headers,
        &body,
        400,
        "bad_request",
        "that is the catalog database",
    );
    // Unknown schools: 404.
    let unknown = server.scratch.db("unknown");
    for (method, path) in [
        (Method::POST, format!("/admin/schools/{unknown}/suspend")),
        (Method::POST, format!("/admin/schools/{unknown}/resume")),
        (Method::DELETE, format!("/admin/schools/{unknown}")),
    ] {
        let (status, headers, body) = server
            .request_to(&admin, method, &path, &with_token, None)
            .await;
        let message = format!("no school with database {unknown}");
        assert_error(status, &headers, &body, 404, "school_not_found", &message);
    }
    // A duplicate: 409.
    let school = server.scratch.db("dup");
    let request = format!(
        r#"{{"name": "Dup School", "database": {}}}"#,
        json_string(&school)
    );
    let (status, _, body) = server
        .request_to(
            &admin,
            Method::POST,
            "/admin/schools",
            &with_token,
            Some(&request),
        )
        .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) = server
        .request_to(
            &admin,
            Method::POST,
            "/admin/schools",
            &with_token,
            Some(&request),
        )
        .await;
    let message = format!("a school with database {school} already exists");
    assert_error(status, &headers, &body, 409, "school_exists", &message);
    // Success bodies are not error-shaped.
    let (status, _, body) = call(Method::POST, "/admin/refresh", None).await;
    assert_eq!(status, 200);
    assert!(
        parse(&body)["generation"].is_u64(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    server.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_the_admin_api_is_a_403() {
    let scratch = Scratch::new();
    let text = config_text(&scratch, "").replace(&format!("token = \"{ADMIN_TOKEN}\"\n"), "");
    assert!(!text.contains(ADMIN_TOKEN), "{text}");
    let server = start_with_text(scratch, &text).await;
    server.wait_ready().await;
    let admin = server.admin.clone().expect("admin listener");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for headers in [vec![], vec![("authorization", auth.as_str())]] {
        let (status, response_headers, body) = server
            .request_to(&admin, Method::GET, "/admin/schools", &headers, None)
            .await;
        let message = "the admin API is disabled: set [admin] token";
        assert_error(
            status,
            &response_headers,
            &body,
            403,
            "admin_disabled",
            message,
        );
    }
    // /metrics needs no token.
    let (status, _, _) = server
        .request_to(&admin, Method::GET, "/metrics", &[], None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_off_at_request_timeout() {
    let (server, _school, token) = school_server("[server]\nrequest_timeout = \"1s\"\n").await;
    let mut stream = TcpStream::connect(host_port(&server.base)).await.unwrap();
    // The head and 10 of the 100 bytes the body claims, then nothing.
    let request = format!(
        "POST /api/lunch-week HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"weekOf\":"
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{response}"));
    assert_eq!(body["code"], "body_timeout", "{body}");
    server.stop().await;
}
