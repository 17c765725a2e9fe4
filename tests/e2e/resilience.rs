//! Failures around the request path: a replica whose catalog is not loaded yet, HTTP/2
//! connections left idle, school connections killed under the pool, and the control
//! loop's supervision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;

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
    let replica = tenant_edge::serve::start(config).await.expect("replica starts");
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
    wait_for("the replica to load its catalog", Duration::from_secs(20), || async {
        let (status, _, _) = first
            .request_to(&base, Method::GET, "/readyz", &[], None)
            .await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _, body) = first
        .request_to(&base, Method::GET, "/api/lunch-week", &[("authorization", &auth)], None)
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
    assert_eq!(sample(&metrics, "control_loop_restarts_total"), Some(0.0), "{metrics}");

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

    let body = wait_for("/readyz to report the loop down", Duration::from_secs(10), || async {
        let (status, _, body) = server.request(Method::GET, "/readyz", &[], None).await;
        (status == 503).then(|| parse(&body))
    })
    .await;
    assert_eq!(body["reason"], "control loop not running", "{body}");
    let metrics = metrics_text(&server).await;
    assert_eq!(sample(&metrics, "control_loop_restarts_total"), Some(1.0), "{metrics}");

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
    let (sender, connection) = hyper::client::conn::http2::Builder::new(
        hyper_util::rt::TokioExecutor::new(),
    )
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
    let (mut idle, idle_ended) = h2_connection(&base).await;
    let (mut busy, busy_ended) = h2_connection(&base).await;
    assert_eq!(h2_get(&mut idle, &base, "/healthz").await, 200);
    let used = std::time::Instant::now();

    // The busy connection always has a request in flight or just answered; the idle one
    // has none after its first.
    let idle_closed = Arc::new(AtomicBool::new(false));
    let keep_busy = {
        let base = base.clone();
        let idle_closed = idle_closed.clone();
        tokio::spawn(async move {
            let mut answered = 0u32;
            while !idle_closed.load(Ordering::SeqCst) || used.elapsed() < IDLE * 3 {
                assert_eq!(h2_get(&mut busy, &base, "/healthz").await, 200);
                answered += 1;
            }
            (busy, answered)
        })
    };
    tokio::time::timeout(IDLE * 10, idle_ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    let closed_after = used.elapsed();
    idle_closed.store(true, Ordering::SeqCst);
    assert!(closed_after >= IDLE, "closed after {closed_after:?}");
    assert!(idle.ready().await.is_err(), "the idle connection takes no more requests");

    let (mut busy, answered) = keep_busy.await.unwrap();
    assert!(answered > 0);
    assert!(!busy_ended.is_finished(), "the busy connection stays open");
    assert_eq!(h2_get(&mut busy, &base, "/healthz").await, 200);
    drop(busy);
    server.stop().await;
}
