//! The listener: accepts connections and serves each with hyper (HTTP/1.1 and HTTP/2,
//! detected per connection), with the protections a public edge needs.
//!
//! What it enforces: a timer on the builder, so `header_read_timeout` is really in force
//! (hyper silently ignores it without one) and also closes idle keep-alive connections; a
//! cap on the request head size and header count (431 beyond); a cap on open connections
//! (beyond it a new connection is closed at once); accept errors such as EMFILE back off
//! instead of spinning. Shutdown stops accepting, lets in-flight requests finish within
//! the grace period, and closes idle connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::ServerConfig;
use crate::http::service;

/// Builds the per-connection protocol settings from `[server]`.
fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer, header_read_timeout is silently off.
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(config.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(config.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Binds the listener, with a clear error naming the address.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))
}

/// Serves `listener` until `stop` is cancelled, then drains: returns once every
/// connection has finished or `grace` has passed (whichever is first).
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken) {
    let config = app.config.load_full();
    let builder = Arc::new(connection_builder(&config.server));
    let connections = Arc::new(Semaphore::new(config.server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut backoff = Duration::from_millis(5);

    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(err) => {
                // EMFILE, ENFILE, ENOBUFS...: wait for resources instead of spinning.
                tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the connection cap: close at once rather than queue.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(service::handle(app, request).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }

    // Stop accepting first: from here new connections are refused by the kernel.
    drop(listener);
    // Then ask every connection to finish: in-flight requests complete, idle keep-alive
    // connections close; a stuck client is cut off when the grace period ends.
    let grace = app.config.load().server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "shutdown grace period over; closing the remaining connections"
        );
    }
}
