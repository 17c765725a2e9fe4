//! `keep_alive_timeout` for HTTP/2: a connection with no open stream for that long is
//! closed gracefully (GOAWAY, then the close), as an idle HTTP/1 connection is
//! (keep_alive.rs). hyper's HTTP/2 keep-alive pings only find dead peers; a live client
//! that keeps a connection open without using it would hold it, and its place under
//! `max_connections`, forever.
//!
//! The service counts the streams being served ([`Streams::start`]); the connection waits
//! on [`Streams::idle_for`] next to hyper's connection future.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The streams of one HTTP/2 connection being served now.
#[derive(Debug, Default)]
pub struct Streams {
    open: AtomicU32,
    /// Streams started so far: an idle period that saw one start is not idle.
    started: AtomicU64,
    /// Woken when a stream starts and when the last open one ends.
    changed: Notify,
}

/// One stream being served; dropping it (response returned, or the stream reset and its
/// service future dropped) ends it.
pub struct Stream {
    streams: Arc<Streams>,
}

impl Streams {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn start(self: &Arc<Self>) -> Stream {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Stream {
            streams: self.clone(),
        }
    }

    /// Returns once no stream has been open for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between is not missed.
            changed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let started = self.started.load(Ordering::SeqCst);
            tokio::select! {
                _ = tokio::time::sleep(limit) => {
                    if self.open.load(Ordering::SeqCst) == 0
                        && self.started.load(Ordering::SeqCst) == started
                    {
                        return;
                    }
                }
                _ = changed => {}
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.streams.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.streams.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn idle_once_no_stream_was_open_for_the_limit() {
        let streams = Streams::new();
        let begun = tokio::time::Instant::now();
        streams.idle_for(LIMIT).await;
        assert_eq!(begun.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_keeps_the_connection_and_the_limit_runs_from_its_end() {
        let streams = Streams::new();
        let idle = streams.clone();
        let waiting = tokio::spawn(async move { idle.idle_for(LIMIT).await });
        let stream = streams.start();
        tokio::time::sleep(LIMIT * 3).await;
        assert!(!waiting.is_finished());
        let ended = tokio::time::Instant::now();
        drop(stream);
        waiting.await.unwrap();
        assert_eq!(ended.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_started_and_ended_within_the_limit_restarts_it() {
        let streams = Streams::new();
        let idle = streams.clone();
        let begun = tokio::time::Instant::now();
        let waiting = tokio::spawn(async move { idle.idle_for(LIMIT).await });
        tokio::time::sleep(LIMIT / 2).await;
        drop(streams.start());
        tokio::time::sleep(LIMIT / 2 + Duration::from_millis(1)).await;
        assert!(!waiting.is_finished());
        waiting.await.unwrap();
        assert_eq!(begun.elapsed(), LIMIT / 2 + LIMIT);
        assert!(streams.idle_for(LIMIT).now_or_never().is_none());
    }
}
