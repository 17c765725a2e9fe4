//! A socket to a school's database whose close completes only once the server has closed
//! its side too.
//!
//! Why: a pooled connection holds one permit of the connection budget. Dropping a client
//! sends Terminate and closes our side at once, but the PostgreSQL backend still exists
//! (and counts against `max_connections`, and shows in `pg_stat_activity`) until it has
//! read that and exited. The connection task, and the permit it holds, end only when the
//! backend's end of the socket is closed, so the budget is never exceeded on the server's
//! side either, not even for a moment.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Sleep;
use tokio_postgres::config::Host;
use tokio_postgres::Config as PgConfig;

/// How long a close waits for the server's end before giving up on it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

enum Inner {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub struct ClosingStream {
    inner: Inner,
    /// Set once our side is shut down: the deadline for the server's end.
    closing: Option<Pin<Box<Sleep>>>,
}

impl ClosingStream {
    /// Connects to the first reachable host of `config` (TCP or Unix socket), like libpq.
    pub async fn connect(config: &PgConfig, timeout: Duration) -> io::Result<Self> {
        let ports = config.get_ports();
        let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "no host configured");
        for (index, host) in config.get_hosts().iter().enumerate() {
            let port = ports
                .get(index)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            let attempt = async {
                match host {
                    Host::Tcp(name) => {
                        let stream = TcpStream::connect((name.as_str(), port)).await?;
                        stream.set_nodelay(true)?;
                        Ok(Inner::Tcp(stream))
                    }
                    Host::Unix(dir) => {
                        let path: PathBuf = dir.join(format!(".s.PGSQL.{port}"));
                        Ok(Inner::Unix(UnixStream::connect(path).await?))
                    }
                }
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(inner)) => {
                    return Ok(Self {
                        inner,
                        closing: None,
                    })
                }
                Ok(Err(err)) => last_error = err,
                Err(_) => last_error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(last_error)
    }
}

impl AsyncRead for ClosingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClosingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            Inner::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    /// Shuts our side down, then waits (bounded) until the server closes its side.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closing.is_none() {
            let shut = match &mut this.inner {
                Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                Inner::Unix(s) => Pin::new(s).poll_shutdown(cx),
            };
            match shut {
                Poll::Pending => return Poll::Pending,
                // The socket is already unusable: nothing to wait for.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.closing = Some(Box::pin(tokio::time::sleep(CLOSE_WAIT)));
                }
            }
        }
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            let read = match &mut this.inner {
                Inner::Tcp(s) => Pin::new(s).poll_read(cx, &mut buf),
                Inner::Unix(s) => Pin::new(s).poll_read(cx, &mut buf),
            };
            match read {
                // The server's end is closed: its backend is gone.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                // Late bytes (a notice, an error for the abandoned query): discard.
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => break,
            }
        }
        match this
            .closing
            .as_mut()
            .map(|deadline| deadline.as_mut().poll(cx))
        {
            Some(Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }
}
