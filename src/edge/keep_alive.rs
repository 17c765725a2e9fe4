//! The two read deadlines of an HTTP/1 connection: `header_read_timeout` while a request
//! head is arriving, `keep_alive_timeout` while the connection sits idle between requests.
//!
//! Why not hyper's own `header_read_timeout`: hyper starts it whenever it waits for the
//! next request, so it is also the keep-alive idle timeout, and a short header timeout
//! (5 s, against slow-header attacks) then closes idle connections sooner than a load
//! balancer gives them up (60 s for AWS ALB and nginx). The balancer sends a request on a
//! connection we are closing at that moment and answers 502. So hyper's timer is off for
//! HTTP/1 and [`TimedReads`] keeps both deadlines on the socket's reads.
//!
//! How the phase is known: the service marks a request as started and finished
//! ([`Activity::request_started`], [`Activity::request_finished`]); the reads see the
//! first byte of the next request. While a request is in flight there is no read
//! deadline (`request_timeout` bounds the handler). It must not be used for HTTP/2, whose
//! multiplexed streams and pings have no such phases.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a connection is between requests. Stored in [`Activity`]'s atomic as its `u8`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte (after a response).
    Idle = 0,
    /// A request head is arriving.
    Head = 1,
    /// A request is being served; reads are its body or the next pipelined request.
    Busy = 2,
    /// Bytes arrived while busy: the next request's head has begun.
    BusyRead = 3,
}

impl TryFrom<u8> for Phase {
    type Error = u8;

    fn try_from(value: u8) -> Result<Phase, u8> {
        match value {
            0 => Ok(Phase::Idle),
            1 => Ok(Phase::Head),
            2 => Ok(Phase::Busy),
            3 => Ok(Phase::BusyRead),
            other => Err(other),
        }
    }
}

impl Phase {
    /// The phase whose deadline applies: bytes read while busy do not start one yet.
    fn timed(self) -> Phase {
        match self {
            Phase::BusyRead => Phase::Busy,
            phase => phase,
        }
    }

    /// The read deadline of this phase, if it has one.
    fn limit(
        self,
        header_read_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Option<Duration> {
        match self {
            Phase::Idle => Some(keep_alive_timeout),
            Phase::Head => Some(header_read_timeout),
            Phase::Busy | Phase::BusyRead => None,
        }
    }
}

/// The phase of one connection, shared by its reads and its service.
#[derive(Debug)]
pub struct Activity(AtomicU8);

impl Activity {
    /// A new connection: its first request head is arriving (its deadline runs from the
    /// accept, as for the preface read before it).
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU8::new(Phase::Head as u8)))
    }

    /// A connection whose reads have no deadline (HTTP/2).
    pub fn untimed() -> Arc<Self> {
        Arc::new(Self(AtomicU8::new(Phase::Busy as u8)))
    }

    pub fn request_started(&self) {
        self.0.store(Phase::Busy as u8, Ordering::Relaxed);
    }

    pub fn request_finished(&self) {
        // Bytes read during the request belong to the next one: its head has begun.
        let next = match self.phase() {
            Phase::BusyRead => Phase::Head,
            _ => Phase::Idle,
        };
        self.0.store(next as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        // Only this module stores, and only a `Phase`; were another value ever found, the
        // head deadline is the safe reading (the connection cannot be held open forever).
        Phase::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(Phase::Head)
    }

    /// Moves from `from` to `to` unless the service changed the phase meanwhile.
    fn advance(&self, from: Phase, to: Phase) {
        let _ = self
            .0
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A socket whose reads fail with `TimedOut` once the current phase's deadline passes;
/// hyper then closes the connection.
pub struct TimedReads<S> {
    inner: S,
    activity: Arc<Activity>,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    /// The phase the deadline was set for.
    timed_phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl<S> TimedReads<S> {
    /// `accepted`: when the connection was accepted, where the first head's time starts.
    pub fn new(
        inner: S,
        activity: Arc<Activity>,
        accepted: Instant,
        header_read_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            header_read_timeout,
            keep_alive_timeout,
            timed_phase: Phase::Head,
            deadline: Box::pin(tokio::time::sleep_until(accepted + header_read_timeout)),
        }
    }

    /// Restarts the deadline when the phase changed since it was set.
    fn follow_phase(&mut self) -> Phase {
        let phase = self.activity.phase();
        let timed = phase.timed();
        if timed != self.timed_phase {
            self.timed_phase = timed;
            if let Some(limit) = timed.limit(self.header_read_timeout, self.keep_alive_timeout) {
                self.deadline.as_mut().reset(Instant::now() + limit);
            }
        }
        phase
    }
}

fn timed_out(phase: Phase) -> io::Error {
    let what = if phase == Phase::Idle {
        "idle keep-alive connection closed (keep_alive_timeout)"
    } else {
        "request head not received in time (header_read_timeout)"
    };
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedReads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let phase = this.follow_phase();
        let timed = matches!(phase, Phase::Idle | Phase::Head);
        // Checked before reading too: a head trickling in a byte at a time is always
        // readable, so the deadline would otherwise never be looked at.
        // (`Sleep::is_elapsed` only turns true once the sleep was polled, which a
        // connection that is always readable never does: compare the clock instead.)
        if timed && Instant::now() >= this.deadline.deadline() {
            return Poll::Ready(Err(timed_out(phase)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    match phase {
                        // The next request's first byte: its head has this long.
                        Phase::Idle => {
                            this.activity.advance(Phase::Idle, Phase::Head);
                            this.follow_phase();
                        }
                        Phase::Busy => this.activity.advance(Phase::Busy, Phase::BusyRead),
                        Phase::Head | Phase::BusyRead => {}
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if timed && this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(timed_out(phase)));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedReads<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD_LIMIT: Duration = Duration::from_secs(5);
    const IDLE_LIMIT: Duration = Duration::from_secs(75);

    fn timed(
        inner: tokio::io::DuplexStream,
    ) -> (TimedReads<tokio::io::DuplexStream>, Arc<Activity>) {
        let activity = Activity::new();
        let reads = TimedReads::new(
            inner,
            activity.clone(),
            Instant::now(),
            HEAD_LIMIT,
            IDLE_LIMIT,
        );
        (reads, activity)
    }

    async fn read_err(reads: &mut TimedReads<tokio::io::DuplexStream>) -> io::ErrorKind {
        let mut buf = [0u8; 16];
        reads.read(&mut buf).await.unwrap_err().kind()
    }

    #[test]
    fn a_phase_round_trips_through_its_u8_and_nothing_else_is_a_phase() {
        for phase in [Phase::Idle, Phase::Head, Phase::Busy, Phase::BusyRead] {
            assert_eq!(Phase::try_from(phase as u8), Ok(phase));
        }
        for other in [4u8, 5, 128, u8::MAX] {
            assert_eq!(Phase::try_from(other), Err(other));
        }
        // A stray value reads as a head, whose deadline still closes the connection.
        let activity = Activity(AtomicU8::new(200));
        assert_eq!(activity.phase(), Phase::Head);
    }

    #[test]
    fn the_service_marks_move_the_phase() {
        let activity = Activity::new();
        assert_eq!(activity.phase(), Phase::Head);
        activity.request_started();
        assert_eq!(activity.phase(), Phase::Busy);
        activity.request_finished();
        assert_eq!(activity.phase(), Phase::Idle);
        activity.request_started();
        activity.advance(Phase::Busy, Phase::BusyRead);
        activity.request_finished();
        assert_eq!(activity.phase(), Phase::Head);
        // An advance from a phase the connection is not in changes nothing.
        activity.advance(Phase::Idle, Phase::Busy);
        assert_eq!(activity.phase(), Phase::Head);
        assert_eq!(Activity::untimed().phase(), Phase::Busy);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_has_header_read_timeout_from_the_accept() {
        let (_client, server) = tokio::io::duplex(64);
        let (mut reads, _) = timed(server);
        let started = Instant::now();
        assert_eq!(read_err(&mut reads).await, io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), HEAD_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_has_keep_alive_timeout_and_a_new_head_header_read_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut reads, activity) = timed(server);
        activity.request_started();
        activity.request_finished();
        // Idle: nothing for longer than the header limit is fine...
        let mut buf = [0u8; 16];
        let idle = tokio::time::timeout(HEAD_LIMIT * 2, reads.read(&mut buf)).await;
        assert!(idle.is_err(), "still open after twice the header limit");
        // ...a first byte starts the head's clock...
        client.write_all(b"G").await.unwrap();
        assert_eq!(reads.read(&mut buf).await.unwrap(), 1);
        let head_started = Instant::now();
        // ...and a head that does not complete is cut off after the header limit.
        assert_eq!(read_err(&mut reads).await, io::ErrorKind::TimedOut);
        assert_eq!(head_started.elapsed(), HEAD_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_at_keep_alive_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let (mut reads, activity) = timed(server);
        activity.request_started();
        activity.request_finished();
        let idle_since = Instant::now();
        assert_eq!(read_err(&mut reads).await, io::ErrorKind::TimedOut);
        assert_eq!(idle_since.elapsed(), IDLE_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_has_no_read_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut reads, activity) = timed(server);
        activity.request_started();
        let mut buf = [0u8; 16];
        let waited = tokio::time::timeout(IDLE_LIMIT * 2, reads.read(&mut buf)).await;
        assert!(waited.is_err(), "no deadline while busy");
        // A byte during the request is the next head: it gets the header limit once the
        // request finishes.
        client.write_all(b"G").await.unwrap();
        assert_eq!(reads.read(&mut buf).await.unwrap(), 1);
        activity.request_finished();
        let finished = Instant::now();
        assert_eq!(read_err(&mut reads).await, io::ErrorKind::TimedOut);
        assert_eq!(finished.elapsed(), HEAD_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickling_in_is_still_cut_off() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut reads, _) = timed(server);
        let started = Instant::now();
        let mut buf = [0u8; 16];
        loop {
            client.write_all(b"x").await.unwrap();
            match reads.read(&mut buf).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(err) => {
                    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
                    break;
                }
            }
        }
        assert!(started.elapsed() >= HEAD_LIMIT && started.elapsed() <= HEAD_LIMIT * 2);
    }
}
