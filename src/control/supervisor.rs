//! Keeps the control loop running: a loop that panics or returns while the process is not
//! stopping is started again, after a backoff (1 s doubling to 30 s), with the panic
//! message logged and counted (`control_loop_restarts_total`); /readyz reports the
//! process not ready while no loop runs, so a load balancer moves traffic to a replica
//! whose catalog is kept current.
//!
//! The loop's inputs outlive each run: the supervisor owns the receiver of
//! [`ControlEvent`](crate::state::ControlEvent)s (the sending side lives in `App::control`) and forwards every event
//! to the current run through a channel of its own. Events queued in a run that panicked
//! are lost with it; a refresh request among them sees its reply channel closed, which
//! its caller reports as "control loop stopped". Each run gets a child of the stop token,
//! cancelled when the run ends, so the tasks it started (the catalog listener) end with
//! it instead of running on next to the new run's.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use crate::state::App;

/// Waits between a loop's end and its next start: `first`, doubling up to `max`; back to
/// `first` after a run that lasted longer than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };
}

/// What a supervisor reports, so readiness and metrics follow the loop.
pub trait Health: Send + Sync + 'static {
    /// A run started (`true`) or ended while the process is not stopping (`false`).
    fn set_running(&self, running: bool);
    /// A run ended unexpectedly and will be started again.
    fn restarted(&self);
}

impl Health for App {
    fn set_running(&self, running: bool) {
        self.control_running.store(running, Ordering::Relaxed);
    }

    fn restarted(&self) {
        self.metrics.control_loop_restarted();
    }
}

/// Runs `start(events, stop)` until `stop` is cancelled, starting it again whenever it
/// ends before that. `start` builds one run of the loop around the receiver it is given.
pub async fn supervise<E, F, Fut>(
    health: Arc<dyn Health>,
    mut events: mpsc::UnboundedReceiver<E>,
    stop: CancellationToken,
    backoff: Backoff,
    mut start: F,
) where
    E: Send + 'static,
    F: FnMut(mpsc::UnboundedReceiver<E>, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delay = backoff.first;
    // An event that arrived as a run ended: the next run gets it first.
    let mut pending: Option<E> = None;
    loop {
        let (forward, receiver) = mpsc::unbounded_channel();
        if let Some(event) = pending.take() {
            let _ = forward.send(event);
        }
        let run_stop = stop.child_token();
        let mut run = tokio::spawn(start(receiver, run_stop.clone()));
        health.set_running(true);
        let started = tokio::time::Instant::now();
        let ended = loop {
            tokio::select! {
                biased;
                ended = &mut run => break ended,
                event = events.recv() => match event {
                    Some(event) => {
                        if let Err(mpsc::error::SendError(event)) = forward.send(event) {
                            pending = Some(event);
                        }
                    }
                    // Every sender is gone (the app is being dropped): nothing more to
                    // forward; the run ends with `stop`.
                    None => break (&mut run).await,
                },
            }
        };
        run_stop.cancel();
        if stop.is_cancelled() {
            return;
        }
        health.set_running(false);
        health.restarted();
        if started.elapsed() > backoff.max {
            delay = backoff.first;
        }
        tracing::error!(
            reason = %why(ended),
            restart_in_ms = delay.as_millis() as u64,
            "the control loop stopped; restarting it"
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Why a run ended, for the log: its panic message, or that it returned.
fn why(ended: Result<(), JoinError>) -> String {
    match ended {
        Ok(()) => "returned without being stopped".into(),
        Err(err) if err.is_panic() => format!("panicked: {}", panic_message(&*err.into_panic())),
        Err(err) => err.to_string(),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a message)"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorded {
        running: AtomicBool,
        restarts: AtomicU32,
    }

    impl Health for Recorded {
        fn set_running(&self, running: bool) {
            self.running.store(running, Ordering::SeqCst);
        }

        fn restarted(&self) {
            self.restarts.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        // Paused time: each sleep moves the clock without waiting.
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_panics_is_started_again_and_gets_the_events_sent_after() {
        let health = Arc::new(Recorded::default());
        let (events, receiver) = mpsc::unbounded_channel::<&'static str>();
        let (seen, mut seen_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let supervisor = tokio::spawn(supervise(
            health.clone(),
            receiver,
            stop.clone(),
            Backoff::DEFAULT,
            {
                let runs = runs.clone();
                move |mut events: mpsc::UnboundedReceiver<&'static str>, stop: CancellationToken| {
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    let seen = seen.clone();
                    async move {
                        if run == 0 {
                            panic!("injected failure");
                        }
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                Some(event) = events.recv() => { let _ = seen.send(event); }
                            }
                        }
                    }
                }
            },
        ));
        until("the first run to fail", || {
            health.restarts.load(Ordering::SeqCst) == 1
        })
        .await;
        // Between the failure and the restart the loop is not running.
        assert!(!health.running.load(Ordering::SeqCst));
        events.send("refresh").unwrap();
        assert_eq!(seen_rx.recv().await, Some("refresh"));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(health.running.load(Ordering::SeqCst));

        stop.cancel();
        supervisor.await.unwrap();
        assert_eq!(health.restarts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_back_off_from_one_second_doubling_to_thirty() {
        let health = Arc::new(Recorded::default());
        let (_events, receiver) = mpsc::unbounded_channel::<()>();
        let stop = CancellationToken::new();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let origin = tokio::time::Instant::now();
        let supervisor = tokio::spawn(supervise(
            health.clone(),
            receiver,
            stop.clone(),
            Backoff::DEFAULT,
            {
                let starts = starts.clone();
                // A run that returns at once is restarted like one that panics.
                move |_events, _stop| {
                    starts.lock().unwrap().push(origin.elapsed().as_secs());
                    async {}
                }
            },
        ));
        until("eight runs", || starts.lock().unwrap().len() >= 8).await;
        stop.cancel();
        supervisor.await.unwrap();
        let starts = starts.lock().unwrap();
        assert_eq!(starts[..8], [0, 1, 3, 7, 15, 31, 61, 91]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_stopped_by_the_token_is_not_restarted() {
        let health = Arc::new(Recorded::default());
        let (_events, receiver) = mpsc::unbounded_channel::<()>();
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            health.clone(),
            receiver,
            stop.clone(),
            Backoff::DEFAULT,
            |_events, stop: CancellationToken| async move { stop.cancelled().await },
        ));
        until("the run to start", || health.running.load(Ordering::SeqCst)).await;
        stop.cancel();
        supervisor.await.unwrap();
        assert_eq!(health.restarts.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_reason_names_the_panic_message() {
        let ended = tokio::spawn(async { panic!("catalog went {}", "away") }).await;
        assert_eq!(why(ended), "panicked: catalog went away");
        let ended = tokio::spawn(async { panic!("static text") }).await;
        assert_eq!(why(ended), "panicked: static text");
        assert_eq!(why(Ok(())), "returned without being stopped");
    }
}
