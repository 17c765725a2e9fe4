//! The listener: accepts connections and serves each with hyper (HTTP/1.1 and HTTP/2,
//! detected per connection), with the protections a public edge needs.
//!
//! What it enforces: `header_read_timeout` on every HTTP/1 request head and
//! `keep_alive_timeout` on idle HTTP/1 connections (keep_alive.rs, in place of hyper's
//! header timer, which would close idle connections at the header timeout) and on HTTP/2
//! connections without an open stream (h2_idle.rs); a cap on the
//! request head size and header count (431 beyond); a cap on open connections
//! (beyond it a new connection is closed at once); accept errors such as EMFILE back off
//! instead of spinning. Shutdown stops accepting, lets in-flight requests finish within
//! the grace period, and closes idle connections.
//!
//! hyper's `header_read_timeout` only runs once hyper's HTTP/1 parser reads a head. Before
//! that, hyper-util's `auto` builder waits, with no timeout, for enough bytes to tell
//! HTTP/1 from the HTTP/2 preface: a connection that never sends a byte (or sends the
//! preface one byte at a time) would be held forever. So [`read_preface`] reads those first
//! bytes itself, under the same `header_read_timeout`, and hands them back to hyper through
//! [`Prefixed`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::edge::h2_idle::Streams;
use crate::edge::keep_alive::{Activity, TimedReads};
use crate::edge::service::Body;
use crate::state::App;

/// What a listener serves: a request in, a response out. Every failure is a response
/// (built by `edge::error`), so a handler cannot fail.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Builds the per-connection protocol settings from `[server]`.
fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Off on purpose (hyper's default with a timer is 30 s): keep_alive.rs keeps both
        // the header and the idle deadline.
        .header_read_timeout(None)
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

/// Serves `listener` with `handler` until `stop` is cancelled, then drains: returns once
/// every connection has finished or `[server] shutdown_grace` has passed (whichever is
/// first). `connections` caps the open connections of the listeners that share it. Every
/// listener, the main one on each worker and the admin one, runs this loop, so each gets
/// the same timeouts, caps and drain.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    app: Arc<App>,
    handler: Arc<H>,
    stop: CancellationToken,
    connections: Arc<Semaphore>,
) {
    let config = app.config.load_full();
    let shared = Arc::new(Shared {
        handler,
        builder: connection_builder(&config.server),
        stop: stop.clone(),
        // Cancelled when the grace period ends, to close connections still open then (in
        // the binary the runtime's end would drop them anyway; in-process it must be
        // explicit).
        force_close: CancellationToken::new(),
        header_read_timeout: config.server.header_read_timeout,
        keep_alive_timeout: config.server.keep_alive_timeout,
    });
    let graceful = GracefulShutdown::new();
    let mut backoff = Duration::from_millis(5);

    while let Some(stream) = accept(&listener, &stop, &mut backoff).await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the connection cap: close at once rather than queue.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        app.metrics
            .connection_accepted(crate::pool::worker::current());
        let connection = serve_connection(
            shared.clone(),
            stream,
            tokio::time::Instant::now(),
            graceful.watcher(),
            permit,
        );
        tokio::spawn(connection);
    }

    // Stop accepting first: from here new connections are refused by the kernel.
    drop(listener);
    drain(
        graceful,
        &shared.force_close,
        app.config.load().server.shutdown_grace,
    )
    .await;
}

/// What every connection of one listener shares.
struct Shared<H> {
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    stop: CancellationToken,
    force_close: CancellationToken,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
}

/// The next accepted connection, or `None` once `stop` is cancelled. Accept errors such
/// as EMFILE, ENFILE or ENOBUFS wait for resources, doubling `backoff` up to 1 s, instead
/// of spinning; a success resets it.
async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
    backoff: &mut Duration,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                *backoff = Duration::from_millis(5);
                return Some(stream);
            }
            Err(err) => {
                tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(*backoff) => {}
                }
                *backoff = (*backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One connection, from its first bytes to its close; holds `permit` (its place under the
/// connection cap) until then.
async fn serve_connection<H: Handler>(
    shared: Arc<Shared<H>>,
    stream: TcpStream,
    accepted: tokio::time::Instant,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
) {
    // The first bytes, under the header timeout; a shutdown meanwhile drops the
    // connection, which has no request in flight yet.
    let stream = tokio::select! {
        _ = shared.stop.cancelled() => None,
        read = tokio::time::timeout(shared.header_read_timeout, read_preface(stream)) => {
            read.ok().and_then(Result::ok)
        }
    };
    let Some(stream) = stream else {
        drop(permit);
        return;
    };
    // HTTP/1 reads keep the header and idle deadlines; HTTP/2 multiplexes streams, so its
    // reads have none: its idle deadline counts open streams instead (h2_idle.rs).
    let h2 = stream.is_h2();
    let activity = (!h2).then(Activity::new);
    let streams = h2.then(Streams::new);
    let reads = TimedReads::new(
        stream,
        activity.clone().unwrap_or_else(Activity::untimed),
        accepted,
        shared.header_read_timeout,
        shared.keep_alive_timeout,
    );
    let handler = shared.handler.clone();
    let service_streams = streams.clone();
    let service = service_fn(move |request| {
        let handler = handler.clone();
        let activity = activity.clone();
        let stream = service_streams.as_ref().map(Streams::start);
        async move {
            if let Some(activity) = &activity {
                activity.request_started();
            }
            let response = handler.handle(request).await;
            if let Some(activity) = &activity {
                activity.request_finished();
            }
            drop(stream);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = shared
        .builder
        .serve_connection(TokioIo::new(reads), service);
    run_connection(&shared, connection, streams.as_deref()).await;
    // Held until here: a drain waits for this connection to end.
    drop(watcher);
    drop(permit);
}

/// Drives one connection to its end. A graceful shutdown (in-flight requests finish, then
/// the connection closes; GOAWAY for HTTP/2) starts when the listener stops, or when an
/// HTTP/2 connection has had no open stream for `keep_alive_timeout`; the grace period's
/// end drops the connection.
async fn run_connection<H: Handler, C: GracefulConnection>(
    shared: &Shared<H>,
    connection: C,
    streams: Option<&Streams>,
) where
    C::Error: std::fmt::Display,
{
    let idle = async {
        match streams {
            Some(streams) => streams.idle_for(shared.keep_alive_timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(connection, idle);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = shared.stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle.as_mut(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            // The grace period is over: dropping the connection closes its socket.
            _ = shared.force_close.cancelled() => return,
        }
    }
}

/// Asks every connection to finish: in-flight requests complete, idle keep-alive
/// connections close; a stuck client is cut off (through `force_close`) when `grace` ends.
async fn drain(graceful: GracefulShutdown, force_close: &CancellationToken, grace: Duration) {
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "shutdown grace period over; closing the remaining connections"
        );
        force_close.cancel();
    }
}

/// The HTTP/2 connection preface; anything else is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the protocol is decided: the whole HTTP/2 preface, or a first byte that
/// cannot begin it. `Err` for a connection closed before sending anything decisive.
pub(crate) async fn read_preface(mut stream: TcpStream) -> io::Result<Prefixed> {
    let mut prefix = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; H2_PREFACE.len()];
    loop {
        let wanted = H2_PREFACE.len() - prefix.len();
        let read = stream.read(&mut chunk[..wanted]).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        prefix.extend_from_slice(&chunk[..read]);
        if prefix.len() == H2_PREFACE.len() || !H2_PREFACE.starts_with(&prefix) {
            return Ok(Prefixed {
                prefix,
                offset: 0,
                stream,
            });
        }
    }
}

/// A stream whose first bytes were already read: they are returned again before the rest.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    offset: usize,
    stream: TcpStream,
}

impl Prefixed {
    /// Whether the connection opened with the HTTP/2 preface.
    pub(crate) fn is_h2(&self) -> bool {
        self.prefix == H2_PREFACE
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.offset < this.prefix.len() {
            let rest = &this.prefix[this.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.offset += n;
            if this.offset == this.prefix.len() {
                this.prefix = Vec::new();
                this.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
